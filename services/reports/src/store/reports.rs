//! Reports and their versions, read and written inside an [`OrgTx`].

use std::collections::HashSet;
use treven_mesh::trace::{self, Traced as _};

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use treven_mesh::{OrgId, Role};
use uuid::Uuid;

use crate::model::{
    Approval, Archival, Content, PiiDecision, QualityCheck, Report, ReviewerAssignment, Scope,
    Section, Status, Submission, Version, VersionCause,
};

use super::{OrgTx, Result, StoreError, column, from_json, to_json};

pub(super) const REPORT_COLUMNS: &str = "id, org_id, title, scope, status, latest_version, approved_by, approved_at, \
     approved_version, submitted_by, submitted_at, submitted_version, failure_reason, created_by, \
     created_at, updated_at, reviewer_id, reviewer_user_id, reviewer_assigned_by, reviewer_assigned_at,
     archived_at, archived_by";
const VERSION_COLUMNS: &str = "report_id, number, content_hash, cause, section, author_id, reason, \
     change_summary, rejected_sections, quality_checks, pii_decisions, created_at";

/// A version about to be stored.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    /// The report.
    pub report_id: Uuid,
    /// Its number.
    pub number: i32,
    /// The content.
    pub content: &'a Content,
    /// What made it.
    pub cause: VersionCause,
    /// The section changed.
    pub section: Option<Section>,
    /// The author.
    pub author_id: &'a str,
    /// Why.
    pub reason: &'a str,
    /// What changed.
    pub change_summary: &'a str,
    /// Rejected sections.
    pub rejected_sections: &'a [Section],
    /// Quality checks.
    pub quality_checks: &'a [QualityCheck],
    /// PII decisions.
    pub pii_decisions: &'a [PiiDecision],
}

impl OrgTx {
    /// Stores a new report in `generating` and its generation job.
    pub async fn insert_report_with_job(
        &mut self,
        scope: &Scope,
        document_ids: &[Uuid],
        roles: &[Role],
        request_id: &str,
    ) -> Result<Report> {
        let id = Uuid::now_v7();
        let row: ReportRow = sqlx::query_as(&format!(
            "INSERT INTO reports (id, org_id, scope, country, exploitation_type, status, document_ids, created_by, search) \
             VALUES ($1, $2, $3, $4, $5, 'generating', $6, $7, report_search_vector('', $3, NULL)) \
             RETURNING {REPORT_COLUMNS}"
        ))
        .bind(id)
        .bind(self.tx.org_id().as_uuid())
        .bind(to_json(scope)?)
        .bind(&scope.country)
        .bind(scope.exploitation_type.as_str())
        .bind(to_json(&document_ids)?)
        .bind(self.tx.actor_id().to_owned())
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.insert_report_with_job", "INSERT"))
        .await?;
        sqlx::query(
            "INSERT INTO report_jobs (id, org_id, report_id, requested_by, requester_roles, request_id, \
                traceparent, state) VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued')",
        )
        .bind(Uuid::now_v7())
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(self.tx.actor_id().to_owned())
        .bind(to_json(&roles)?)
        .bind(request_id)
        // The worker continues the trace of the request that queued it.
        .bind(trace::current_traceparent())
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.insert_report_with_job", "INSERT"))
        .await?;
        row.try_into()
    }

    /// One report; locked until the transaction ends when `lock`.
    pub async fn report(&mut self, id: Uuid, lock: bool) -> Result<Option<Report>> {
        let row: Option<ReportRow> = sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL{}",
            if lock { " FOR UPDATE" } else { "" }
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.report", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The documents a report was asked to draw on.
    pub async fn document_ids(&mut self, id: Uuid) -> Result<Vec<Uuid>> {
        let raw: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT document_ids FROM reports WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.document_ids", "SELECT"))
        .await?;
        raw.map(|v| from_json("document_ids", v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Up to `limit` reports after `after` (created_at, id), newest first.
    pub async fn reports(
        &mut self,
        filter: &ReportFilter<'_>,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Report>> {
        let rows: Vec<ReportRow> = sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE org_id = $1 AND deleted_at IS NULL \
               AND ($7 OR archived_at IS NULL) \
               AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR country = $3) \
               AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
             ORDER BY created_at DESC, id DESC LIMIT $6"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(filter.status.map(Status::as_str))
        .bind(filter.country)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .bind(filter.include_archived)
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.reports", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Up to `limit` reports matching `query` (web search syntax: words,
    /// `"a phrase"`, `or`, `-word`) and `filter`, best match first (then
    /// newest), after the search position `after`. Each with its rank.
    pub async fn search_reports(
        &mut self,
        query: &str,
        filter: &ReportFilter<'_>,
        after: Option<&SearchPosition>,
        limit: u32,
    ) -> Result<Vec<(Report, f32)>> {
        let rows: Vec<RankedRow> = sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS}, rank FROM ( \
                 SELECT *, ts_rank(search, websearch_to_tsquery('english', $7)) AS rank FROM reports \
                 WHERE org_id = $1 AND search @@ websearch_to_tsquery('english', $7) \
                   AND deleted_at IS NULL AND ($9 OR archived_at IS NULL) \
                   AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR country = $3) \
             ) matched \
             WHERE ($4::real IS NULL OR (rank, created_at, id) < ($4, $5, $6)) \
             ORDER BY rank DESC, created_at DESC, id DESC LIMIT $8"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(filter.status.map(Status::as_str))
        .bind(filter.country)
        .bind(after.map(|p| p.rank))
        .bind(after.map(|p| p.created_at))
        .bind(after.map(|p| p.id))
        .bind(query)
        .bind(i64::from(limit))
        .bind(filter.include_archived)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|row| Ok((row.report.try_into()?, row.rank)))
            .collect()
    }

    /// One version and its content.
    pub async fn version(
        &mut self,
        report: Uuid,
        number: i32,
    ) -> Result<Option<(Version, Content)>> {
        let row: Option<VersionWithContent> = sqlx::query_as(&format!(
            "SELECT content, {VERSION_COLUMNS} FROM report_versions \
             WHERE org_id = $1 AND report_id = $2 AND number = $3"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(number)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.version", "SELECT"))
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((row.version.try_into()?, row.content.0))),
        }
    }

    /// Up to `limit` versions numbered below `before`, newest first.
    pub async fn versions(
        &mut self,
        report: Uuid,
        before: Option<i32>,
        limit: u32,
    ) -> Result<Vec<Version>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM report_versions WHERE org_id = $1 AND report_id = $2 \
               AND ($3::integer IS NULL OR number < $3) ORDER BY number DESC LIMIT $4"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.versions", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Ids of PII findings kept (with a justification) in any version of
    /// `report` up to `number`.
    pub async fn kept_findings(&mut self, report: Uuid, number: i32) -> Result<HashSet<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM report_versions v, jsonb_array_elements(v.pii_decisions) d, \
                    unnest(ARRAY[d->>'finding_id', d->>'saved_finding_id']) id \
             WHERE v.org_id = $1 AND v.report_id = $2 AND v.number <= $3 AND d->>'action' = 'keep' \
               AND id IS NOT NULL AND id <> ''",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(number)
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.kept_findings", "SELECT"))
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// Stores a version and points the report at it with `status` and
    /// `title`, clearing any approval.
    pub async fn insert_version(
        &mut self,
        version: &NewVersion<'_>,
        status: Status,
    ) -> Result<(Version, Report)> {
        let row: VersionRow = sqlx::query_as(&format!(
            "INSERT INTO report_versions (org_id, report_id, number, content, content_hash, cause, section, \
                 author_id, reason, change_summary, rejected_sections, quality_checks, pii_decisions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {VERSION_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(version.report_id)
        .bind(version.number)
        .bind(to_json(version.content)?)
        .bind(version.content.hash())
        .bind(version.cause.as_str())
        .bind(version.section.map(Section::as_str))
        .bind(version.author_id)
        .bind(version.reason)
        .bind(version.change_summary)
        .bind(to_json(&version.rejected_sections)?)
        .bind(to_json(&version.quality_checks)?)
        .bind(to_json(&version.pii_decisions)?)
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.insert_version", "INSERT"))
        .await?;
        let report: ReportRow = sqlx::query_as(&format!(
            "UPDATE reports SET latest_version = $3, title = $4, status = $5, failure_reason = '', \
                    approved_by = NULL, approved_at = NULL, approved_version = NULL, updated_at = clock_timestamp(), \
                    search = report_search_vector($4, scope, \
                        (SELECT content FROM report_versions WHERE org_id = $1 AND report_id = $2 AND number = $3)) \
             WHERE org_id = $1 AND id = $2 RETURNING {REPORT_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(version.report_id)
        .bind(version.number)
        .bind(&version.content.title_block.title)
        .bind(status.as_str())
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.insert_version", "UPDATE"))
        .await?;
        Ok((row.try_into()?, report.try_into()?))
    }

    /// Moves a report to `status`, recording `approval` when given (and
    /// keeping the current one otherwise).
    pub async fn set_status(
        &mut self,
        id: Uuid,
        status: Status,
        approval: Option<&Approval>,
        failure_reason: &str,
    ) -> Result<Report> {
        let row: ReportRow = sqlx::query_as(&format!(
            "UPDATE reports SET status = $3, failure_reason = $4, \
                    approved_by = COALESCE($5, approved_by), approved_at = COALESCE($6, approved_at), \
                    approved_version = COALESCE($7, approved_version), updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 RETURNING {REPORT_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(status.as_str())
        .bind(failure_reason)
        .bind(approval.map(|a| a.approved_by.as_str()))
        .bind(approval.map(|a| a.approved_at))
        .bind(approval.map(|a| a.version))
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.set_status", "UPDATE"))
        .await?;
        row.try_into()
    }

    /// Moves a draft to `in_review`, recording `submission` (who sent which
    /// version, for four-eyes approval).
    pub async fn set_submitted(&mut self, id: Uuid, submission: &Submission) -> Result<Report> {
        let row: ReportRow = sqlx::query_as(&format!(
            "UPDATE reports SET status = 'in_review', failure_reason = '', submitted_by = $3, \
                    submitted_at = $4, submitted_version = $5, updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 RETURNING {REPORT_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(&submission.submitted_by)
        .bind(submission.submitted_at)
        .bind(submission.version)
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.set_submitted", "UPDATE"))
        .await?;
        row.try_into()
    }
}

/// Which reports a list or search returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportFilter<'a> {
    /// Only reports in this status.
    pub status: Option<Status>,
    /// Only reports about this country (ISO 3166-1 alpha-2).
    pub country: Option<&'a str>,
    /// Archived reports too (hidden by default).
    pub include_archived: bool,
}

/// Where a page of search results ends: the last report's rank, creation
/// time and id, which order the results.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchPosition {
    /// The rank (`ts_rank`) of the last report.
    pub rank: f32,
    /// Its creation time.
    pub created_at: DateTime<Utc>,
    /// Its id.
    pub id: Uuid,
}

#[derive(sqlx::FromRow)]
struct RankedRow {
    #[sqlx(flatten)]
    report: ReportRow,
    rank: f32,
}

#[derive(sqlx::FromRow)]
pub(super) struct ReportRow {
    id: Uuid,
    org_id: Uuid,
    title: String,
    scope: Json<Scope>,
    status: String,
    latest_version: i32,
    approved_by: Option<String>,
    approved_at: Option<DateTime<Utc>>,
    approved_version: Option<i32>,
    submitted_by: Option<String>,
    submitted_at: Option<DateTime<Utc>>,
    submitted_version: Option<i32>,
    failure_reason: String,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    reviewer_id: Option<String>,
    reviewer_user_id: Option<Uuid>,
    reviewer_assigned_by: Option<String>,
    reviewer_assigned_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    archived_by: Option<String>,
}

impl TryFrom<ReportRow> for Report {
    type Error = StoreError;
    fn try_from(row: ReportRow) -> Result<Self> {
        let approval = match (row.approved_by, row.approved_at, row.approved_version) {
            (Some(approved_by), Some(approved_at), Some(version)) => Some(Approval {
                approved_by,
                approved_at,
                version,
            }),
            _ => None,
        };
        let submission = match (row.submitted_by, row.submitted_at, row.submitted_version) {
            (Some(submitted_by), Some(submitted_at), Some(version)) => Some(Submission {
                submitted_by,
                submitted_at,
                version,
            }),
            _ => None,
        };
        let reviewer = match (
            row.reviewer_id,
            row.reviewer_user_id,
            row.reviewer_assigned_by,
            row.reviewer_assigned_at,
        ) {
            (Some(reviewer_id), Some(user_id), Some(assigned_by), Some(assigned_at)) => {
                Some(ReviewerAssignment {
                    reviewer_id,
                    user_id,
                    assigned_by,
                    assigned_at,
                })
            }
            _ => None,
        };
        Ok(Report {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            title: row.title,
            scope: row.scope.0,
            status: column("status", &row.status)?,
            latest_version: row.latest_version,
            approval,
            submission,
            failure_reason: row.failure_reason,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            reviewer,
            archival: match (row.archived_at, row.archived_by) {
                (Some(archived_at), Some(archived_by)) => Some(Archival {
                    archived_by,
                    archived_at,
                }),
                _ => None,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    report_id: Uuid,
    number: i32,
    content_hash: String,
    cause: String,
    section: Option<String>,
    author_id: String,
    reason: String,
    change_summary: String,
    rejected_sections: Json<Vec<Section>>,
    quality_checks: Json<Vec<QualityCheck>>,
    pii_decisions: Json<Vec<PiiDecision>>,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct VersionWithContent {
    /// Decoded straight from the JSONB bytes into the typed content: no
    /// `serde_json::Value` tree in between (#18: that tree, ~20 KB of
    /// strings for a report, was most of a GetReport's allocations).
    content: Json<Content>,
    #[sqlx(flatten)]
    version: VersionRow,
}

impl TryFrom<VersionRow> for Version {
    type Error = StoreError;
    fn try_from(row: VersionRow) -> Result<Self> {
        let section = match row.section {
            Some(raw) => Some(raw.parse::<Section>().map_err(|()| {
                StoreError::Internal(sqlx::Error::Decode(format!("section {raw:?}").into()))
            })?),
            None => None,
        };
        Ok(Version {
            report_id: row.report_id,
            number: row.number,
            content_hash: row.content_hash,
            cause: column::<VersionCause>("cause", &row.cause)?,
            section,
            author_id: row.author_id,
            reason: row.reason,
            change_summary: row.change_summary,
            rejected_sections: row.rejected_sections.0,
            quality_checks: row.quality_checks.0,
            pii_decisions: row.pii_decisions.0,
            created_at: row.created_at,
        })
    }
}
