//! Postgres storage of the reports service.
//!
//! Report data is read and written through an [`OrgTx`]: a transaction that
//! has switched to the `treven_app` role and set `app.org_id`, so row-level
//! security confines it to one organisation (queries filter by organisation
//! as well). The job queue is claimed across organisations by the owner
//! ([`PgStore::claim_job`], [`PgStore::heartbeat`], [`PgStore::release`]);
//! everything a worker then does for a job runs in an [`OrgTx`] of the job's
//! organisation that re-checks the worker still holds the lease.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use treven_mesh::{OrgId, Role, ServiceError};
use uuid::Uuid;

use crate::config::{PoolOptions, SCHEMA};
use crate::model::{
    Approval, Confidence, Content, ExploitationType, PiiDecision, QualityCheck, Report, Scope,
    Section, SourceRef, Status, Trend, Version, VersionCause,
};

use treven_mesh::postgres::{PgFailure, classify, org_transaction_start};

/// Migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure, classified for the client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres cannot be reached or is shutting down; retrying may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint was violated (a concurrent write won).
    #[error("changed concurrently")]
    Conflict(#[source] sqlx::Error),
    /// Anything else: a bug or a schema mismatch.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            PgFailure::Unavailable => StoreError::Unavailable(error),
            PgFailure::UniqueViolation | PgFailure::Serialization => StoreError::Conflict(error),
            PgFailure::Other => StoreError::Internal(error),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => ServiceError::unavailable(source),
            StoreError::Conflict(source) => ServiceError::conflict_on(
                "base_version",
                "the report changed concurrently; reload and retry",
            )
            .with_source(source),
            StoreError::Internal(source) => ServiceError::internal(source),
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A job a worker holds the lease of.
#[derive(Debug, Clone)]
pub struct JobClaim {
    /// The job.
    pub id: Uuid,
    /// Its organisation.
    pub org_id: OrgId,
    /// The report it generates.
    pub report_id: Uuid,
    /// Who asked for the report.
    pub requested_by: String,
    /// Their roles when they asked.
    pub requester_roles: Vec<Role>,
    /// The request it came from.
    pub request_id: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// The reports store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A lazily connecting pool (the service starts while Postgres is down
    /// and answers UNAVAILABLE until it is back).
    pub fn connect_lazy(options: PgConnectOptions, pool: &PoolOptions) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Self { pool }
    }

    /// The pool (for tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the `reports` schema if needed and applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .execute(&self.pool)
            .await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Opens a transaction confined to `org`, acting for `actor`.
    pub async fn begin(&self, org: OrgId, actor: &str) -> Result<OrgTx> {
        let tx = self
            .pool
            .begin_with(org_transaction_start(org))
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Internal(e) => StoreError::Unavailable(e),
                other => other,
            })?;
        Ok(OrgTx {
            tx,
            org_id: org,
            actor_id: actor.to_owned(),
        })
    }

    /// Worker path (owner, across organisations): leases the next job that
    /// is due, or whose worker's lease lapsed, to `worker` for `lease`.
    pub async fn claim_job(&self, worker: Uuid, lease: Duration) -> Result<Option<JobClaim>> {
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE report_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
                    lease_expires_at = clock_timestamp() + $2 * interval '1 millisecond', \
                    heartbeat_at = clock_timestamp() \
             WHERE id = ( \
                 SELECT id FROM report_jobs \
                 WHERE (state = 'queued' AND run_after <= clock_timestamp()) \
                    OR (state = 'running' AND lease_expires_at < clock_timestamp()) \
                 ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, org_id, report_id, requested_by, requester_roles, request_id, attempts",
        )
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Worker path: extends `worker`'s lease on `job`; false when the lease
    /// was lost (lapsed and taken, or the job ended).
    pub async fn heartbeat(&self, job: Uuid, worker: Uuid, lease: Duration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE report_jobs SET lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
                    heartbeat_at = clock_timestamp() \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(job)
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Worker path: gives `job` back (shutdown) without counting the attempt.
    pub async fn release(&self, job: Uuid, worker: Uuid) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE report_jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), \
                    lease_owner = NULL, lease_expires_at = NULL, run_after = clock_timestamp() \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(job)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A transaction confined to one organisation, acting for one caller.
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org_id: OrgId,
    actor_id: String,
}

const REPORT_COLUMNS: &str = "id, org_id, title, scope, status, latest_version, approved_by, approved_at, \
     approved_version, failure_reason, created_by, created_at, updated_at";
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

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Internal(sqlx::Error::Encode(Box::new(e))))
}

fn from_json<T: serde::de::DeserializeOwned>(name: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Internal(sqlx::Error::Decode(format!("{name}: {e}").into())))
}

impl OrgTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// The organisation.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

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
            "INSERT INTO reports (id, org_id, scope, country, exploitation_type, status, document_ids, created_by) \
             VALUES ($1, $2, $3, $4, $5, 'generating', $6, $7) RETURNING {REPORT_COLUMNS}"
        ))
        .bind(id)
        .bind(self.org_id.as_uuid())
        .bind(to_json(scope)?)
        .bind(&scope.country)
        .bind(scope.exploitation_type.as_str())
        .bind(to_json(&document_ids)?)
        .bind(&self.actor_id)
        .fetch_one(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO report_jobs (id, org_id, report_id, requested_by, requester_roles, request_id, state) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued')",
        )
        .bind(Uuid::now_v7())
        .bind(self.org_id.as_uuid())
        .bind(id)
        .bind(&self.actor_id)
        .bind(to_json(&roles)?)
        .bind(request_id)
        .execute(&mut *self.tx)
        .await?;
        row.try_into()
    }

    /// One report; locked until the transaction ends when `lock`.
    pub async fn report(&mut self, id: Uuid, lock: bool) -> Result<Option<Report>> {
        let row: Option<ReportRow> = sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE org_id = $1 AND id = $2{}",
            if lock { " FOR UPDATE" } else { "" }
        ))
        .bind(self.org_id.as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The documents a report was asked to draw on.
    pub async fn document_ids(&mut self, id: Uuid) -> Result<Vec<Uuid>> {
        let raw: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT document_ids FROM reports WHERE org_id = $1 AND id = $2")
                .bind(self.org_id.as_uuid())
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
        raw.map(|v| from_json("document_ids", v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Up to `limit` reports after `after` (created_at, id), newest first.
    pub async fn reports(
        &mut self,
        status: Option<Status>,
        country: Option<&str>,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Report>> {
        let rows: Vec<ReportRow> = sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE org_id = $1 \
               AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR country = $3) \
               AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
             ORDER BY created_at DESC, id DESC LIMIT $6"
        ))
        .bind(self.org_id.as_uuid())
        .bind(status.map(Status::as_str))
        .bind(country)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
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
        .bind(self.org_id.as_uuid())
        .bind(report)
        .bind(number)
        .fetch_optional(&mut *self.tx)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((
                row.version.try_into()?,
                from_json("content", row.content)?,
            ))),
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
        .bind(self.org_id.as_uuid())
        .bind(report)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
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
        .bind(self.org_id.as_uuid())
        .bind(report)
        .bind(number)
        .fetch_all(&mut *self.tx)
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
        .bind(self.org_id.as_uuid())
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
        .await?;
        let report: ReportRow = sqlx::query_as(&format!(
            "UPDATE reports SET latest_version = $3, title = $4, status = $5, failure_reason = '', \
                    approved_by = NULL, approved_at = NULL, approved_version = NULL, updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 RETURNING {REPORT_COLUMNS}"
        ))
        .bind(self.org_id.as_uuid())
        .bind(version.report_id)
        .bind(version.number)
        .bind(&version.content.title_block.title)
        .bind(status.as_str())
        .fetch_one(&mut *self.tx)
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
        .bind(self.org_id.as_uuid())
        .bind(id)
        .bind(status.as_str())
        .bind(failure_reason)
        .bind(approval.map(|a| a.approved_by.as_str()))
        .bind(approval.map(|a| a.approved_at))
        .bind(approval.map(|a| a.version))
        .fetch_one(&mut *self.tx)
        .await?;
        row.try_into()
    }

    /// Whether `worker` still holds the lease of `job`; locks the job row
    /// until the transaction ends.
    pub async fn holds_lease(&mut self, job: Uuid, worker: Uuid) -> Result<bool> {
        let held: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM report_jobs WHERE org_id = $1 AND id = $2 AND lease_owner = $3 \
               AND state = 'running' FOR UPDATE",
        )
        .bind(self.org_id.as_uuid())
        .bind(job)
        .bind(worker)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(held.is_some())
    }

    /// Saves one generated section of `job` (replacing an earlier save).
    pub async fn save_job_section(
        &mut self,
        job: Uuid,
        section: Section,
        content: &Content,
        redactions: usize,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO report_job_sections (org_id, job_id, section, content, redactions) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id, section) DO UPDATE SET content = EXCLUDED.content, \
                 redactions = EXCLUDED.redactions, saved_at = clock_timestamp()",
        )
        .bind(self.org_id.as_uuid())
        .bind(job)
        .bind(section.as_str())
        .bind(to_json(content)?)
        .bind(redactions as i32)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The sections `job` has saved, with the redactions made in each.
    pub async fn job_sections(&mut self, job: Uuid) -> Result<Vec<(Section, Content, i32)>> {
        let rows: Vec<(String, serde_json::Value, i32)> = sqlx::query_as(
            "SELECT section, content, redactions FROM report_job_sections WHERE org_id = $1 AND job_id = $2",
        )
        .bind(self.org_id.as_uuid())
        .bind(job)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|(section, content, redactions)| {
                let section: Section = section.parse().map_err(|()| {
                    StoreError::Internal(sqlx::Error::Decode(format!("section {section:?}").into()))
                })?;
                Ok((section, from_json("content", content)?, redactions))
            })
            .collect()
    }

    /// Ends `job` as `succeeded` or `failed`.
    pub async fn finish_job(&mut self, job: Uuid, succeeded: bool, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE report_jobs SET state = $3, last_error = $4, lease_owner = NULL, lease_expires_at = NULL, \
                    finished_at = clock_timestamp() WHERE org_id = $1 AND id = $2",
        )
        .bind(self.org_id.as_uuid())
        .bind(job)
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(error)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Puts `job` back in the queue to run after `delay`.
    pub async fn retry_job(&mut self, job: Uuid, delay: Duration, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE report_jobs SET state = 'queued', last_error = $3, lease_owner = NULL, lease_expires_at = NULL, \
                    run_after = clock_timestamp() + $4 * interval '1 millisecond' WHERE org_id = $1 AND id = $2",
        )
        .bind(self.org_id.as_uuid())
        .bind(job)
        .bind(error)
        .bind(delay.as_millis() as f64)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Replaces the trends derived from `report`.
    pub async fn replace_trends(&mut self, report: Uuid, trends: &[Trend]) -> Result<()> {
        sqlx::query("DELETE FROM trends WHERE org_id = $1 AND report_id = $2")
            .bind(self.org_id.as_uuid())
            .bind(report)
            .execute(&mut *self.tx)
            .await?;
        for trend in trends {
            sqlx::query(
                "INSERT INTO trends (id, org_id, report_id, report_version, country, exploitation_type, \
                     statement, confidence, tags, sources, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(trend.id)
            .bind(self.org_id.as_uuid())
            .bind(report)
            .bind(trend.report_version)
            .bind(&trend.country)
            .bind(trend.exploitation_type.as_str())
            .bind(&trend.statement)
            .bind(trend.confidence.as_str())
            .bind(to_json(&trend.tags)?)
            .bind(to_json(&trend.sources)?)
            .bind(trend.updated_at)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Up to `limit` trends after `after` (country, updated_at, id), by
    /// country then most recently updated.
    pub async fn trends(
        &mut self,
        country: Option<&str>,
        exploitation_type: Option<ExploitationType>,
        after: Option<&(String, DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Trend>> {
        let rows: Vec<TrendRow> = sqlx::query_as(
            "SELECT id, report_id, report_version, country, exploitation_type, statement, confidence, \
                    tags, sources, updated_at FROM trends WHERE org_id = $1 \
               AND ($2::text IS NULL OR country = $2) AND ($3::text IS NULL OR exploitation_type = $3) \
               AND ($4::text IS NULL OR country > $4 OR (country = $4 AND (updated_at, id) < ($5, $6))) \
             ORDER BY country, updated_at DESC, id DESC LIMIT $7",
        )
        .bind(self.org_id.as_uuid())
        .bind(country)
        .bind(exploitation_type.map(ExploitationType::as_str))
        .bind(after.map(|(c, _, _)| c.as_str()))
        .bind(after.map(|(_, at, _)| *at))
        .bind(after.map(|(_, _, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

/// A text column that does not parse is a schema/code mismatch: internal.
fn column<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| {
        StoreError::Internal(sqlx::Error::Decode(format!("{name}: {e}").into()))
    })
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    org_id: Uuid,
    report_id: Uuid,
    requested_by: String,
    requester_roles: serde_json::Value,
    request_id: String,
    attempts: i32,
}

impl TryFrom<JobRow> for JobClaim {
    type Error = StoreError;
    fn try_from(row: JobRow) -> Result<Self> {
        Ok(JobClaim {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            report_id: row.report_id,
            requested_by: row.requested_by,
            requester_roles: from_json("requester_roles", row.requester_roles)?,
            request_id: row.request_id,
            attempts: row.attempts,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReportRow {
    id: Uuid,
    org_id: Uuid,
    title: String,
    scope: serde_json::Value,
    status: String,
    latest_version: i32,
    approved_by: Option<String>,
    approved_at: Option<DateTime<Utc>>,
    approved_version: Option<i32>,
    failure_reason: String,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
        Ok(Report {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            title: row.title,
            scope: from_json::<Scope>("scope", row.scope)?,
            status: column("status", &row.status)?,
            latest_version: row.latest_version,
            approval,
            failure_reason: row.failure_reason,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
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
    rejected_sections: serde_json::Value,
    quality_checks: serde_json::Value,
    pii_decisions: serde_json::Value,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct VersionWithContent {
    content: serde_json::Value,
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
            rejected_sections: from_json("rejected_sections", row.rejected_sections)?,
            quality_checks: from_json("quality_checks", row.quality_checks)?,
            pii_decisions: from_json("pii_decisions", row.pii_decisions)?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TrendRow {
    id: Uuid,
    report_id: Uuid,
    report_version: i32,
    country: String,
    exploitation_type: String,
    statement: String,
    confidence: String,
    tags: serde_json::Value,
    sources: serde_json::Value,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TrendRow> for Trend {
    type Error = StoreError;
    fn try_from(row: TrendRow) -> Result<Self> {
        let confidence = match row.confidence.as_str() {
            "low" => Confidence::Low,
            "medium" => Confidence::Medium,
            "high" => Confidence::High,
            _ => Confidence::Unspecified,
        };
        Ok(Trend {
            id: row.id,
            country: row.country,
            exploitation_type: column("exploitation_type", &row.exploitation_type)?,
            statement: row.statement,
            confidence,
            tags: from_json("tags", row.tags)?,
            sources: from_json::<Vec<SourceRef>>("sources", row.sources)?,
            report_id: row.report_id,
            report_version: row.report_version,
            updated_at: row.updated_at,
        })
    }
}
