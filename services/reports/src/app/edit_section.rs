//! Edit a section (UpdateSection) or reject it (RejectSection), and the checks
//! and save every section change shares: a new version after the PII gate,
//! with its audit entries in the same transaction (outbox).

use serde_json::json;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::diff;
use crate::model::{Content, PiiDecision, Report, Section, Status, Version, VersionCause};
use crate::pii::{GateError, gate};
use crate::quality;
use crate::store::{NewVersion, OrgTx};

use super::{Reports, ReportsError, Result, SectionEdit, failed_precondition, not_found, stale};

impl Reports {
    pub(super) fn check_section(&self, edit: &SectionEdit) -> Result<()> {
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
        // An edit may leave the section empty (the analyst deleted its text):
        // the version's quality checks then report it missing, as after a
        // RejectSection, which also records that the generated text was
        // rejected.
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
    pub(super) async fn editable(
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
    pub(super) async fn save_section(
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
        automatic: Vec<AuditEntry>,
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
        for entry in automatic {
            self.audit(&mut tx, context, entry).await?;
        }
        self.audit(
            &mut tx,
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
        self.audit_decisions(
            &mut tx,
            context,
            report.id,
            number,
            &decided,
            cause.as_str(),
        )
        .await?;
        self.commit(tx).await?;
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
            Vec::new(),
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
            Vec::new(),
        )
        .await
    }
}
