//! What the reports service does, independent of the wire: role checks,
//! the workflow, versions, the PII gate, exports, sharing and trends.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;
use treven_mesh::pagination::{CursorCodec, page_limit};
use treven_mesh::{ErrorCode, MeshContext, Role, ServiceError};
use treven_proto::treven::tenants::v1 as tenants;
use uuid::Uuid;

use crate::clients::{AuditEntry, Clients, GenerationRequest};
use crate::config::Limits;
use crate::diff::{self, SectionDiff};
use crate::model::{
    Approval, Content, ExploitationType, ExportFormat, Page, PiiDecision, PiiFinding, Report,
    Scope, Section, SourceRef, Status, Trend, Version, VersionCause,
};
use crate::pii::{Decided, GateError, gate};
use crate::quality;
use crate::render;
use crate::store::{NewVersion, OrgTx, PgStore};

/// Default page size.
pub const DEFAULT_PAGE: u32 = 50;
/// Largest page size.
pub const MAX_PAGE: u32 = 100;
/// Default and largest page of trends.
pub const TREND_PAGE: (u32, u32) = (200, 500);

/// Everyone in the organisation: reads.
const MEMBERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Viewer];
/// Those who create, edit, submit, approve, export and share.
const EDITORS: &[Role] = &[Role::Admin, Role::Analyst];

/// An error of the reports service: a plain service error, or personal data
/// that blocks a write.
#[derive(Debug)]
pub enum ReportsError {
    /// Any other error.
    Service(ServiceError),
    /// PII_DETECTED with the undecided findings.
    Pii(Vec<PiiFinding>),
}

impl From<ServiceError> for ReportsError {
    fn from(error: ServiceError) -> Self {
        ReportsError::Service(error)
    }
}

impl From<crate::store::StoreError> for ReportsError {
    fn from(error: crate::store::StoreError) -> Self {
        ReportsError::Service(error.into())
    }
}

type Result<T> = std::result::Result<T, ReportsError>;

/// A new section's content from a request (only `section` is read).
#[derive(Debug, Clone)]
pub struct SectionEdit {
    /// The section.
    pub section: Section,
    /// Content holding the section's field, citations and flags.
    pub content: Content,
}

/// A finished export.
#[derive(Debug, Clone)]
pub struct Export {
    /// The version exported.
    pub version: i32,
    /// Its format.
    pub format: ExportFormat,
    /// The presigned URL.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// The reports service.
#[derive(Debug, Clone)]
pub struct Reports {
    store: PgStore,
    cursors: CursorCodec,
    clients: Clients,
    limits: Limits,
    wake: Arc<Notify>,
}

fn failed_precondition(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::FailedPrecondition, message)
}

fn stale(field: &str, latest: i32) -> ServiceError {
    ServiceError::conflict_on(
        field,
        format!("is not the latest version ({latest}); reload and retry"),
    )
}

fn not_found() -> ServiceError {
    ServiceError::not_found("report")
}

impl Reports {
    /// The service over `store`.
    pub fn new(
        store: PgStore,
        cursors: CursorCodec,
        clients: Clients,
        limits: Limits,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            cursors,
            clients,
            limits,
            wake,
        }
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The clients.
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    async fn begin(&self, context: &MeshContext) -> Result<OrgTx> {
        Ok(self
            .store
            .begin(context.org_id(), context.user_id())
            .await?)
    }

    async fn audit(&self, context: &MeshContext, entry: AuditEntry) -> Result<()> {
        Ok(self.clients.audit(context.token(), &entry).await?)
    }

    async fn audit_decisions(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: i32,
        decided: &[Decided],
        during: &str,
    ) -> Result<()> {
        for d in decided {
            self.audit(
                context,
                AuditEntry::report(
                    "report.pii_decision",
                    report,
                    json!({
                        "finding_id": d.finding.id,
                        "type": d.finding.kind.as_str(),
                        "section": d.finding.section,
                        "field_path": d.finding.field_path,
                        "action": match d.decision.action {
                            crate::model::PiiAction::Redact => "redact",
                            crate::model::PiiAction::Keep => "keep",
                        },
                        "justification": d.decision.justification,
                        "version": version,
                        "during": during,
                    }),
                ),
            )
            .await?;
        }
        Ok(())
    }

    async fn audit_blocked(
        &self,
        context: &MeshContext,
        report: Uuid,
        findings: &[PiiFinding],
        during: &str,
    ) -> Result<()> {
        let types: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        self.audit(
            context,
            AuditEntry::report(
                "report.pii_blocked",
                report,
                json!({"during": during, "findings": ids, "types": types}),
            ),
        )
        .await
    }

    /// Starts a report and its generation job (analysts, admins).
    pub async fn create(
        &self,
        context: &MeshContext,
        scope: Scope,
        document_ids: Vec<Uuid>,
    ) -> Result<Report> {
        context.require_any(EDITORS)?;
        if document_ids.len() > self.limits.max_documents {
            return Err(ServiceError::invalid_field(
                "document_ids",
                format!("at most {} documents", self.limits.max_documents),
            )
            .into());
        }
        let mut tx = self.begin(context).await?;
        let report = tx
            .insert_report_with_job(&scope, &document_ids, context.roles(), context.request_id())
            .await?;
        self.audit(
            context,
            AuditEntry::report(
                "report.create",
                report.id,
                json!({
                    "country": scope.country,
                    "region": scope.region,
                    "sector": scope.sector,
                    "exploitation_type": scope.exploitation_type.as_str(),
                    "client_type": scope.client_type.as_str(),
                    "documents": document_ids.len(),
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(report_id = %report.id, org_id = %report.org_id, "report created, generation queued");
        self.wake.notify_waiters();
        self.clients
            .publish(
                context.org_id(),
                report.id,
                json!({"report_id": report.id, "status": "generating"}),
            )
            .await;
        Ok(report)
    }

    /// One report and one of its versions (the latest when `version` is 0).
    pub async fn get(
        &self,
        context: &MeshContext,
        id: Uuid,
        version: i32,
    ) -> Result<(Report, Option<(Version, Content)>)> {
        context.require_any(MEMBERS)?;
        if version < 0 {
            return Err(
                ServiceError::invalid_field("version", "must be 0 (latest) or more").into(),
            );
        }
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, false).await?.ok_or_else(not_found)?;
        let number = if version == 0 {
            report.latest_version
        } else {
            version
        };
        if number == 0 {
            return Ok((report, None));
        }
        let found = tx
            .version(id, number)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        Ok((report, Some(found)))
    }

    /// A page of reports, newest first.
    pub async fn list(
        &self,
        context: &MeshContext,
        status: Option<Status>,
        country: Option<String>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Report>> {
        context.require_any(MEMBERS)?;
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!(
            "reports?status={}&country={}",
            status.map_or("", Status::as_str),
            country.as_deref().unwrap_or_default()
        );
        let after: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        let mut items = tx
            .reports(status, country.as_deref(), after.as_ref(), limit + 1)
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => {
                self.cursors
                    .encode(context.org_id(), &scope, &(last.created_at, last.id))
            }
            _ => String::new(),
        };
        Ok(Page { items, next_cursor })
    }

    fn check_section(&self, edit: &SectionEdit) -> Result<()> {
        let limit = self.limits.max_field_chars;
        let key = edit.section.as_str();
        let mut content = edit.content.clone();
        for (path, text) in content.text_fields_mut(edit.section) {
            if text.chars().count() > limit {
                return Err(ServiceError::invalid_field(
                    format!("content.{path}"),
                    format!("must be at most {limit} characters"),
                )
                .into());
            }
        }
        let items = match edit.section {
            Section::KeyJudgements => edit.content.key_judgements.len(),
            Section::RedFlagIndicators => edit.content.red_flag_indicators.len(),
            Section::InformationRequirements => edit.content.information_requirements.len(),
            Section::HeadlineCards => edit.content.headline_cards.len(),
            _ => 0,
        };
        let citations = edit
            .content
            .citations
            .iter()
            .filter(|c| c.section == key)
            .count();
        for (field, n) in [
            (format!("content.{key}"), items),
            ("content.citations".to_owned(), citations),
        ] {
            if n > self.limits.max_items {
                return Err(ServiceError::invalid_field(
                    field,
                    format!("at most {} items", self.limits.max_items),
                )
                .into());
            }
        }
        if edit.content.section_is_empty(edit.section) {
            return Err(ServiceError::invalid_field(
                format!("content.{key}"),
                "is empty; use RejectSection to remove a section",
            )
            .into());
        }
        for (i, c) in edit.content.citations.iter().enumerate() {
            if c.section == key
                && (c.id.is_empty()
                    || c.id.len() > 32
                    || !c
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            {
                return Err(ServiceError::invalid_field(
                    format!("content.citations[{i}].id"),
                    "must be 1–32 letters, digits, '-' or '_'",
                )
                .into());
            }
        }
        Ok(())
    }

    /// Loads the latest version of an editable report, locking the report.
    async fn editable(
        &self,
        tx: &mut OrgTx,
        id: Uuid,
        base_version: i32,
        base_field: &str,
    ) -> Result<(Report, Version, Content)> {
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if matches!(report.status, Status::Generating | Status::Failed)
            || report.latest_version == 0
        {
            return Err(failed_precondition(format!(
                "the report is {}; only generated reports can be changed",
                report.status
            ))
            .into());
        }
        if base_version != report.latest_version {
            return Err(stale(base_field, report.latest_version).into());
        }
        let (version, content) = tx
            .version(id, report.latest_version)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        Ok((report, version, content))
    }

    #[allow(clippy::too_many_arguments)]
    async fn save_section(
        &self,
        context: &MeshContext,
        mut tx: OrgTx,
        report: Report,
        previous: Version,
        old: Content,
        mut new: Content,
        section: Section,
        cause: VersionCause,
        reason: &str,
        decisions: &[PiiDecision],
    ) -> Result<(Version, Content)> {
        let kept = tx.kept_findings(report.id, previous.number).await?;
        let decided = if cause == VersionCause::Rejected {
            Vec::new()
        } else {
            match gate(&mut new, &[section], decisions, &kept) {
                Ok(decided) => decided,
                Err(GateError::Service(error)) => return Err(error.into()),
                Err(GateError::Undecided(findings)) => {
                    drop(tx);
                    self.audit_blocked(context, report.id, &findings, cause.as_str())
                        .await?;
                    return Err(ReportsError::Pii(findings));
                }
            }
        };
        let mut rejected: Vec<Section> = previous
            .rejected_sections
            .iter()
            .copied()
            .filter(|s| *s != section)
            .collect();
        if cause == VersionCause::Rejected {
            rejected.push(section);
            rejected.sort();
        }
        let checks = quality::checks(&new);
        let summary = diff::summary(section, &old, &new);
        let decisions: Vec<PiiDecision> = decided.iter().map(|d| d.decision.clone()).collect();
        let number = previous.number + 1;
        let (version, _) = tx
            .insert_version(
                &NewVersion {
                    report_id: report.id,
                    number,
                    content: &new,
                    cause,
                    section: Some(section),
                    author_id: context.user_id(),
                    reason,
                    change_summary: &summary,
                    rejected_sections: &rejected,
                    quality_checks: &checks,
                    pii_decisions: &decisions,
                },
                Status::Draft,
            )
            .await?;
        let action = match cause {
            VersionCause::Edited => "report.section.update",
            VersionCause::Regenerated => "report.section.regenerate",
            VersionCause::Rejected => "report.section.reject",
            VersionCause::Generated => "report.generate",
        };
        self.audit(
            context,
            AuditEntry::report(
                action,
                report.id,
                json!({
                    "version": number,
                    "section": section.as_str(),
                    "reason": reason,
                    "content_hash": version.content_hash,
                    "previous_status": report.status.as_str(),
                }),
            ),
        )
        .await?;
        self.audit_decisions(context, report.id, number, &decided, cause.as_str())
            .await?;
        tx.commit().await?;
        self.clients
            .publish(
                context.org_id(),
                report.id,
                json!({"report_id": report.id, "status": "draft", "version": number, "section": section.as_str()}),
            )
            .await;
        Ok((version, new))
    }

    /// Replaces one section and saves a new version (analysts, admins).
    pub async fn update_section(
        &self,
        context: &MeshContext,
        id: Uuid,
        edit: SectionEdit,
        reason: String,
        base_version: i32,
        decisions: Vec<PiiDecision>,
    ) -> Result<(Version, Content)> {
        context.require_any(EDITORS)?;
        self.check_section(&edit)?;
        let mut tx = self.begin(context).await?;
        let (report, previous, old) = self
            .editable(&mut tx, id, base_version, "base_version")
            .await?;
        let mut new = old.clone();
        new.replace_section(edit.section, &edit.content);
        self.save_section(
            context,
            tx,
            report,
            previous,
            old,
            new,
            edit.section,
            VersionCause::Edited,
            &reason,
            &decisions,
        )
        .await
    }

    /// Empties one section and marks it rejected (analysts, admins).
    pub async fn reject_section(
        &self,
        context: &MeshContext,
        id: Uuid,
        section: Section,
        reason: String,
        base_version: i32,
    ) -> Result<(Version, Content)> {
        context.require_any(EDITORS)?;
        let mut tx = self.begin(context).await?;
        let (report, previous, old) = self
            .editable(&mut tx, id, base_version, "base_version")
            .await?;
        if old.section_is_empty(section) {
            return Err(failed_precondition(format!("{section} is already empty")).into());
        }
        let mut new = old.clone();
        new.clear_section(section);
        self.save_section(
            context,
            tx,
            report,
            previous,
            old,
            new,
            section,
            VersionCause::Rejected,
            &reason,
            &[],
        )
        .await
    }

    /// Asks the generator to rewrite one section and saves it (analysts, admins).
    #[allow(clippy::too_many_arguments)]
    pub async fn regenerate_section(
        &self,
        context: &MeshContext,
        id: Uuid,
        section: Section,
        reason: String,
        base_version: i32,
        instructions: String,
        decisions: Vec<PiiDecision>,
        deadline: std::time::Duration,
    ) -> Result<(Version, Content)> {
        context.require_any(EDITORS)?;
        // Read without holding a lock while the generator works.
        let (report, current, documents) = {
            let mut tx = self.begin(context).await?;
            let (report, _, content) = self
                .editable(&mut tx, id, base_version, "base_version")
                .await?;
            let documents = tx.document_ids(id).await?;
            (report, content, documents)
        };
        let instructions = if instructions.trim().is_empty() {
            reason.clone()
        } else {
            format!("{reason}\n\n{instructions}")
        };
        let request = GenerationRequest {
            report: &report,
            documents: &documents,
            sections: &[section],
            current: Some(&current),
            instructions: &instructions,
        };
        let mut generated = self
            .clients
            .generate_section(context.token(), request, section, deadline)
            .await?;
        // Personal data in the model's text is redacted automatically, as
        // during generation: a second call would word it differently, so the
        // finding ids an analyst could decide on would never match again.
        let redacted = crate::pii::redact_all(&mut generated, section)?;
        for decided in &redacted {
            self.clients
                .audit(
                    context.token(),
                    &AuditEntry::report(
                        "report.pii_decision",
                        id,
                        json!({
                            "finding_id": decided.finding.id,
                            "type": decided.finding.kind.as_str(),
                            "section": decided.finding.section,
                            "field_path": decided.finding.field_path,
                            "action": "redact",
                            "automatic": true,
                            "during": "regenerated",
                        }),
                    ),
                )
                .await?;
        }
        let mut tx = self.begin(context).await?;
        let (report, previous, old) = self
            .editable(&mut tx, id, base_version, "base_version")
            .await?;
        let mut new = old.clone();
        new.replace_section(section, &generated);
        self.save_section(
            context,
            tx,
            report,
            previous,
            old,
            new,
            section,
            VersionCause::Regenerated,
            &reason,
            &decisions,
        )
        .await
    }

    async fn existing(&self, tx: &mut OrgTx, id: Uuid) -> Result<Report> {
        Ok(tx.report(id, false).await?.ok_or_else(not_found)?)
    }

    /// A page of versions, newest first.
    pub async fn versions(
        &self,
        context: &MeshContext,
        id: Uuid,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Version>> {
        context.require_any(MEMBERS)?;
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!("versions?report={id}");
        let before: Option<i32> = self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        self.existing(&mut tx, id).await?;
        let mut items = tx.versions(id, before, limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => self.cursors.encode(context.org_id(), &scope, &last.number),
            _ => String::new(),
        };
        Ok(Page { items, next_cursor })
    }

    /// A section-by-section diff of two versions.
    pub async fn diff(
        &self,
        context: &MeshContext,
        id: Uuid,
        from: i32,
        to: i32,
    ) -> Result<(Version, Version, Vec<SectionDiff>)> {
        context.require_any(MEMBERS)?;
        if from < 1 {
            return Err(ServiceError::invalid_field("from", "must be a version number").into());
        }
        if to <= from {
            return Err(ServiceError::invalid_field("to", "must be newer than from").into());
        }
        let mut tx = self.begin(context).await?;
        self.existing(&mut tx, id).await?;
        let (old_version, old) = tx
            .version(id, from)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        let (new_version, new) = tx
            .version(id, to)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        Ok((old_version, new_version, diff::diff(&old, &new)))
    }

    /// Sends the latest version of a draft for review (analysts, admins).
    pub async fn submit(&self, context: &MeshContext, id: Uuid, version: i32) -> Result<Report> {
        context.require_any(EDITORS)?;
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.status != Status::Draft {
            return Err(failed_precondition(format!(
                "the report is {}; only a draft can be submitted",
                report.status
            ))
            .into());
        }
        if version != report.latest_version {
            return Err(stale("version", report.latest_version).into());
        }
        let (latest, _) = tx
            .version(id, version)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        if !latest.rejected_sections.is_empty() {
            let names: Vec<&str> = latest
                .rejected_sections
                .iter()
                .map(|s| s.as_str())
                .collect();
            return Err(failed_precondition(format!(
                "rejected sections must be edited or regenerated first: {}",
                names.join(", ")
            ))
            .into());
        }
        let updated = tx.set_status(id, Status::InReview, None, "").await?;
        self.audit(
            context,
            AuditEntry::report("report.submit", id, json!({"version": version})),
        )
        .await?;
        tx.commit().await?;
        self.publish_status(&updated).await;
        Ok(updated)
    }

    /// Approves the version in review (analysts, admins) and derives trends.
    pub async fn approve(&self, context: &MeshContext, id: Uuid, version: i32) -> Result<Report> {
        context.require_any(EDITORS)?;
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.status != Status::InReview {
            return Err(failed_precondition(format!(
                "the report is {}; only a report in review can be approved",
                report.status
            ))
            .into());
        }
        if version != report.latest_version {
            return Err(stale("version", report.latest_version).into());
        }
        let (_, content) = tx
            .version(id, version)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        let approval = Approval {
            approved_by: context.user_id().to_owned(),
            approved_at: Utc::now(),
            version,
        };
        let updated = tx
            .set_status(id, Status::Approved, Some(&approval), "")
            .await?;
        let trends = derive_trends(&updated, version, &content, approval.approved_at);
        tx.replace_trends(id, &trends).await?;
        // The sources behind the approved version become its evidence pack
        // (`GET /api/reports/{id}/evidence`, served by documents).
        let mut sources: Vec<String> = content
            .citations
            .iter()
            .map(|c| c.source.source_id.clone())
            // Documents' source ids (32 hex characters); a citation of
            // anything else (an internal dataset label) has no evidence file.
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        sources.sort();
        sources.dedup();
        let evidence = sources.len();
        if !sources.is_empty() {
            self.clients
                .store_evidence(context.token(), id, version, sources)
                .await?;
        }
        self.audit(
            context,
            AuditEntry::report(
                "report.approve",
                id,
                json!({"version": version, "trends": trends.len(), "evidence_sources": evidence}),
            ),
        )
        .await?;
        tx.commit().await?;
        self.publish_status(&updated).await;
        Ok(updated)
    }

    async fn publish_status(&self, report: &Report) {
        self.clients
            .publish(
                report.org_id,
                report.id,
                json!({"report_id": report.id, "status": report.status.as_str(), "version": report.latest_version}),
            )
            .await;
    }

    /// Renders the approved version, stores it through documents and returns
    /// a download URL (analysts, admins). FAILED_PRECONDITION unless approved.
    pub async fn export(
        &self,
        context: &MeshContext,
        id: Uuid,
        format: ExportFormat,
        decisions: Vec<PiiDecision>,
    ) -> Result<Export> {
        context.require_any(EDITORS)?;
        let (report, approval, mut content, kept) = {
            let mut tx = self.begin(context).await?;
            let report = self.existing(&mut tx, id).await?;
            let approval = match (&report.status, &report.approval) {
                (Status::Approved | Status::Exported, Some(approval)) => approval.clone(),
                _ => {
                    return Err(failed_precondition(format!(
                        "the report is {}; it must be approved before export",
                        report.status
                    ))
                    .into());
                }
            };
            let (_, content) = tx
                .version(id, approval.version)
                .await?
                .ok_or_else(|| ServiceError::not_found("version"))?;
            let kept = tx.kept_findings(id, approval.version).await?;
            (report, approval, content, kept)
        };
        let decided = match gate(&mut content, &Section::ALL, &decisions, &kept) {
            Ok(decided) => decided,
            Err(GateError::Service(error)) => return Err(error.into()),
            Err(GateError::Undecided(findings)) => {
                self.audit_blocked(context, id, &findings, "export").await?;
                return Err(ReportsError::Pii(findings));
            }
        };
        let started = std::time::Instant::now();
        let bytes = render::render(&content, format).map_err(ServiceError::internal)?;
        let size = bytes.len();
        tracing::info!(report_id = %id, format = %format, size, elapsed_ms = started.elapsed().as_millis() as u64, "report rendered");
        self.clients
            .put_artifact(context.token(), id, approval.version, format, bytes)
            .await?;
        let name = format!(
            "{}-v{}.{}",
            slug(&report.title),
            approval.version,
            format.extension()
        );
        let (url, expires_at) = self
            .clients
            .presign_artifact(context.token(), id, approval.version, format, &name)
            .await?;
        let mut tx = self.begin(context).await?;
        let current = tx.report(id, true).await?.ok_or_else(not_found)?;
        if current.approval.as_ref().map(|a| a.version) != Some(approval.version)
            || !matches!(current.status, Status::Approved | Status::Exported)
        {
            return Err(ServiceError::conflict_on(
                "id",
                "the report changed while it was exported; retry",
            )
            .into());
        }
        let updated = tx.set_status(id, Status::Exported, None, "").await?;
        self.audit(
            context,
            AuditEntry::report(
                "report.export",
                id,
                json!({"version": approval.version, "format": format.as_str(), "size_bytes": size}),
            ),
        )
        .await?;
        self.audit_decisions(context, id, approval.version, &decided, "export")
            .await?;
        tx.commit().await?;
        self.publish_status(&updated).await;
        Ok(Export {
            version: approval.version,
            format,
            url,
            expires_at,
        })
    }

    /// Shares an approved report with a partner of the caller's organisation
    /// through a tenants grant (analysts, admins).
    pub async fn share(
        &self,
        context: &MeshContext,
        id: Uuid,
        partner: Uuid,
        permission: tenants::ReportPermission,
    ) -> Result<tenants::ReportAccess> {
        context.require_any(EDITORS)?;
        let report = {
            let mut tx = self.begin(context).await?;
            self.existing(&mut tx, id).await?
        };
        if !matches!(report.status, Status::Approved | Status::Exported) {
            return Err(failed_precondition(format!(
                "the report is {}; only approved reports can be shared",
                report.status
            ))
            .into());
        }
        // Tenants checks the partner belongs to the caller's organisation and
        // records the grant in the audit log.
        Ok(self
            .clients
            .grant_access(context.token(), id, partner, permission)
            .await?)
    }

    /// A page of trends by country then most recent.
    pub async fn trends(
        &self,
        context: &MeshContext,
        country: Option<String>,
        exploitation_type: Option<ExploitationType>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Trend>> {
        context.require_any(MEMBERS)?;
        let limit = page_limit(limit, TREND_PAGE.0, TREND_PAGE.1)?;
        let scope = format!(
            "trends?country={}&type={}",
            country.as_deref().unwrap_or_default(),
            exploitation_type.map_or("", ExploitationType::as_str)
        );
        let after: Option<(String, DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        let mut items = tx
            .trends(
                country.as_deref(),
                exploitation_type,
                after.as_ref(),
                limit + 1,
            )
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => self.cursors.encode(
                context.org_id(),
                &scope,
                &(last.country.clone(), last.updated_at, last.id),
            ),
            _ => String::new(),
        };
        Ok(Page { items, next_cursor })
    }
}

fn slug(title: &str) -> String {
    let slug: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().take(60).collect();
    if slug.is_empty() {
        "report".to_owned()
    } else {
        slug
    }
}

/// Trends from the key judgements of an approved version: one per
/// judgement, about the report's country and exploitation type, with the
/// sources its markers cite.
pub fn derive_trends(
    report: &Report,
    version: i32,
    content: &Content,
    at: DateTime<Utc>,
) -> Vec<Trend> {
    if report.scope.country.is_empty() {
        return Vec::new();
    }
    let mut tags: Vec<String> = vec![report.scope.exploitation_type.as_str().to_owned()];
    for extra in [&report.scope.sector, &report.scope.region] {
        let tag = extra.trim().to_lowercase();
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    content
        .key_judgements
        .iter()
        .filter(|kj| !kj.text.trim().is_empty())
        .map(|kj| {
            let cited: HashSet<&str> = quality::markers(&kj.text).into_iter().collect();
            let sources: Vec<SourceRef> = content
                .citations
                .iter()
                .filter(|c| {
                    c.section == Section::KeyJudgements.as_str() && cited.contains(c.id.as_str())
                })
                .map(|c| c.source.clone())
                .collect();
            let mut statement = kj.text.clone();
            for marker in quality::markers(&kj.text) {
                statement = statement.replace(&format!("[{marker}]"), "");
            }
            let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            let statement = statement.replace(" .", ".").replace(" ,", ",");
            Trend {
                id: Uuid::now_v7(),
                country: report.scope.country.clone(),
                exploitation_type: report.scope.exploitation_type,
                statement,
                confidence: kj.confidence,
                tags: tags.clone(),
                sources,
                report_id: report.id,
                report_version: version,
                updated_at: at,
            }
        })
        .collect()
}
