//! Review comments: add (or reply in a thread) after the PII gate, list,
//! resolve and reopen a thread. Every change is audited through the outbox
//! and notifies the report's author and the thread's participants.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use treven_mesh::pagination::page_limit;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{
    Comment, MAX_COMMENT_CHARS, NewNotification, NotificationKind, Page, PiiAction, PiiDecision,
    PiiFinding, Report, Section, recipients,
};
use crate::pii::{Decided, GateError};
use crate::store::{CommentFilter, NewComment, OrgTx};

use super::{DEFAULT_PAGE, MAX_PAGE, Reports, ReportsError, Result, failed_precondition};

/// A comment as asked for.
#[derive(Debug, Clone)]
pub struct CommentDraft {
    /// The text.
    pub body: String,
    /// The version; 0 for the latest (or the thread's, for a reply).
    pub version: i32,
    /// The section it is anchored to.
    pub section: Option<Section>,
    /// The comment replied to.
    pub parent_id: Option<Uuid>,
    /// Decisions on PII findings of an earlier answer.
    pub decisions: Vec<PiiDecision>,
}

fn comment_not_found() -> ServiceError {
    ServiceError::not_found("comment")
}

/// Checks a comment text (or a reason for changes): not blank, at most
/// [`MAX_COMMENT_CHARS`] characters; returns it trimmed.
pub fn parse_comment_text(field: &str, raw: &str) -> std::result::Result<String, ServiceError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ServiceError::invalid_field(field, "must not be empty"));
    }
    if text.chars().count() > MAX_COMMENT_CHARS {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// The PII gate for one free text shown to other users (a comment, a reason
/// for changes): each finding must be redacted or kept with a
/// justification, as for section edits. Findings carry no section and
/// `field` as their field path; their ids are stable for the same text.
/// Returns the text to store and the decisions applied.
pub(super) fn gate_text(
    field: &str,
    text: &str,
    decisions: &[PiiDecision],
) -> std::result::Result<(String, Vec<Decided>), GateError> {
    let by_id: HashMap<&str, (usize, &PiiDecision)> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| (d.finding_id.as_str(), (i, d)))
        .collect();
    if by_id.len() != decisions.len() {
        return Err(
            ServiceError::invalid_field("pii_decisions", "decides the same finding twice").into(),
        );
    }
    let found = treven_pii::detect(text)
        .map_err(|e| ServiceError::invalid_field(field, format!("cannot be scanned: {e}")))?;
    let mut decided = Vec::new();
    let mut undecided = Vec::new();
    let mut actions = Vec::with_capacity(found.len());
    for finding in &found {
        let id = finding.stable_id(field);
        let record = PiiFinding {
            id: id.clone(),
            kind: finding.kind,
            section: String::new(),
            field_path: field.to_owned(),
            start: finding.start,
            end: finding.end,
            placeholder: finding.placeholder.to_owned(),
        };
        match by_id.get(id.as_str()) {
            Some((_, decision)) => {
                actions.push(decision.action);
                decided.push(Decided {
                    finding: record,
                    decision: (*decision).clone(),
                });
            }
            None => {
                actions.push(PiiAction::Keep);
                undecided.push(record);
            }
        }
    }
    if !undecided.is_empty() {
        return Err(GateError::Undecided(undecided));
    }
    if let Some(index) = decisions
        .iter()
        .position(|d| !decided.iter().any(|x| x.finding.id == d.finding_id))
    {
        // The decisions answer another text's findings (the text changed
        // since PII_DETECTED listed them): a conflict with what is sent now,
        // not malformed input.
        let field = format!("pii_decisions[{index}].finding_id");
        return Err(ServiceError::new(
            ErrorCode::FailedPrecondition,
            format!("{field} names no finding in this text; decide on the findings it has"),
        )
        .with_violation(field, "names no finding in this text")
        .into());
    }
    let mut next = actions.iter();
    let stored = treven_pii::apply_decisions(text, &found, |_| match next.next() {
        Some(PiiAction::Redact) => treven_pii::Decision::Redact,
        _ => treven_pii::Decision::Keep,
    })
    .map_err(ServiceError::internal)?;
    Ok((stored, decided))
}

impl Reports {
    /// Passes `text` through [`gate_text`]; a block is audited as
    /// `report.pii_blocked` (in a transaction of its own, after `tx` is
    /// dropped) and answered with PII_DETECTED.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn gate_comment_text(
        &self,
        context: &MeshContext,
        tx: OrgTx,
        report: Uuid,
        field: &str,
        text: &str,
        decisions: &[PiiDecision],
        during: &str,
    ) -> Result<(OrgTx, String, Vec<Decided>)> {
        match gate_text(field, text, decisions) {
            Ok((stored, decided)) => Ok((tx, stored, decided)),
            Err(GateError::Service(error)) => Err(error.into()),
            Err(GateError::Undecided(findings)) => {
                drop(tx);
                self.audit_blocked(context, report, &findings, during)
                    .await?;
                Err(ReportsError::Pii(findings))
            }
        }
    }

    /// Adds a review comment to a version of a report, or a reply in a
    /// thread (analysts, admins), after the PII gate; notifies the report's
    /// author and the thread's participants.
    pub async fn add_comment(
        &self,
        context: &MeshContext,
        report_id: Uuid,
        draft: CommentDraft,
    ) -> Result<Comment> {
        let mut tx = self.begin(context).await?;
        let report = self.existing(&mut tx, report_id).await?;
        if report.latest_version < 1 {
            return Err(failed_precondition("the report has no version to comment on yet").into());
        }
        let (version, section, reply_to) = match draft.parent_id {
            Some(parent_id) => {
                let parent = tx
                    .comment(report_id, parent_id)
                    .await?
                    .ok_or_else(comment_not_found)?;
                if draft.version != 0 && draft.version != parent.version {
                    return Err(ServiceError::invalid_field(
                        "version",
                        "a reply is on its thread's version (leave it 0)",
                    )
                    .into());
                }
                if draft.section.is_some() && draft.section != parent.section {
                    return Err(ServiceError::invalid_field(
                        "section",
                        "a reply is on its thread's section (leave it empty)",
                    )
                    .into());
                }
                (
                    parent.version,
                    parent.section,
                    Some((parent.id, parent.thread_id)),
                )
            }
            None => {
                let version = match draft.version {
                    0 => report.latest_version,
                    v if (1..=report.latest_version).contains(&v) => v,
                    _ => return Err(ServiceError::not_found("version").into()),
                };
                (version, draft.section, None)
            }
        };
        let (mut tx, body, decided) = self
            .gate_comment_text(
                context,
                tx,
                report_id,
                "body",
                &draft.body,
                &draft.decisions,
                "comment",
            )
            .await?;
        let decisions: Vec<PiiDecision> = decided.iter().map(|d| d.decision.clone()).collect();
        let comment = tx
            .insert_comment(&NewComment {
                report_id,
                version,
                section,
                reply_to,
                body: &body,
                pii_decisions: &decisions,
            })
            .await?;
        let participants = match reply_to {
            Some(_) => tx.thread_participants(comment.thread_id).await?,
            None => Vec::new(),
        };
        let notified = self
            .notify(
                &mut tx,
                NewNotification {
                    kind: NotificationKind::CommentAdded,
                    report_id,
                    comment_id: Some(comment.id),
                    version,
                    recipients: recipients(
                        context.user_id(),
                        std::iter::once(report.created_by.as_str())
                            .chain(participants.iter().map(String::as_str)),
                    ),
                },
            )
            .await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.comment.add",
                report_id,
                json!({
                    "comment_id": comment.id,
                    "thread_id": comment.thread_id,
                    "parent_id": comment.parent_id,
                    "version": version,
                    "section": section.map(|s| s.as_str()),
                    "characters": body.chars().count(),
                    "notified": notified.len(),
                }),
            ),
        )
        .await?;
        self.audit_decisions(&mut tx, context, report_id, version, &decided, "comment")
            .await?;
        self.commit(tx).await?;
        self.clients
            .push_notifications(context.org_id(), &notified)
            .await;
        Ok(comment)
    }

    /// A page of a report's review comments, oldest first (every member).
    pub async fn comments(
        &self,
        context: &MeshContext,
        report_id: Uuid,
        filter: CommentFilter,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Comment>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!(
            "comments?report={report_id}&version={}&unresolved={}",
            filter.version.unwrap_or(0),
            filter.unresolved_only
        );
        let after: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        self.existing(&mut tx, report_id).await?;
        let mut items = tx
            .comments(report_id, filter, after.as_ref(), limit + 1)
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

    /// Resolves (`resolve`) or reopens the thread of comment `comment_id`
    /// (analysts, admins); returns the thread's first comment. Resolving a
    /// resolved thread (or reopening an open one) changes nothing and is
    /// not audited again.
    pub async fn set_comment_resolved(
        &self,
        context: &MeshContext,
        report_id: Uuid,
        comment_id: Uuid,
        resolve: bool,
    ) -> Result<Comment> {
        let mut tx = self.begin(context).await?;
        let _report: Report = self.existing(&mut tx, report_id).await?;
        let comment = tx
            .comment(report_id, comment_id)
            .await?
            .ok_or_else(comment_not_found)?;
        if comment.resolved.is_some() == resolve {
            return Ok(tx
                .comment(report_id, comment.thread_id)
                .await?
                .ok_or_else(comment_not_found)?);
        }
        let thread = tx
            .set_thread_resolved(report_id, comment.thread_id, resolve)
            .await?
            .ok_or_else(comment_not_found)?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                if resolve {
                    "report.comment.resolve"
                } else {
                    "report.comment.reopen"
                },
                report_id,
                json!({"comment_id": comment_id, "thread_id": thread.id, "version": thread.version}),
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(thread)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_text_passes_unchanged() {
        let (stored, decided) = gate_text("body", "Cite the ILO figure in [c2].", &[]).unwrap();
        assert_eq!(stored, "Cite the ILO figure in [c2].");
        assert!(decided.is_empty());
    }

    #[test]
    fn an_email_blocks_until_redacted() {
        let text = "Ask jane.doe@example.org for the wage slips";
        let Err(GateError::Undecided(findings)) = gate_text("body", text, &[]) else {
            panic!("a finding expected")
        };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].field_path, "body");
        assert_eq!(findings[0].section, "");
        let redact = PiiDecision {
            finding_id: findings[0].id.clone(),
            action: PiiAction::Redact,
            justification: String::new(),
            saved_finding_id: String::new(),
        };
        let (stored, decided) = gate_text("body", text, std::slice::from_ref(&redact)).unwrap();
        assert_eq!(stored, "Ask [EMAIL] for the wage slips");
        assert_eq!(decided.len(), 1);
        // A decision for a finding the text does not have is refused.
        assert!(matches!(
            gate_text("body", "nothing personal here", &[redact]),
            Err(GateError::Service(_))
        ));
    }

    #[test]
    fn comment_text_is_bounded() {
        assert!(parse_comment_text("body", "   ").is_err());
        assert!(parse_comment_text("body", &"a".repeat(MAX_COMMENT_CHARS + 1)).is_err());
        assert_eq!(parse_comment_text("body", " ok ").unwrap(), "ok");
    }
}
