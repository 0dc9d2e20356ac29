//! Domain types of the review workflow: review comments and notifications.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PiiDecision, Section};

/// Longest review comment (and reason for requested changes), in characters.
pub const MAX_COMMENT_CHARS: usize = 4_000;
/// Most comment ids a request for changes may name.
pub const MAX_REFERENCED_COMMENTS: usize = 50;
/// Most recipients one change notifies (a submission without a reviewer
/// notifies the organisation's analysts and admins, up to this many).
pub const MAX_RECIPIENTS: usize = 200;

/// A review comment on one version of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    /// UUID.
    pub id: Uuid,
    /// The report.
    pub report_id: Uuid,
    /// The version commented on.
    pub version: i32,
    /// The section it is anchored to; `None` for the whole report.
    pub section: Option<Section>,
    /// The first comment of its thread (its own id for a first comment).
    pub thread_id: Uuid,
    /// The comment it replies to.
    pub parent_id: Option<Uuid>,
    /// The author's subject.
    pub author_id: String,
    /// The text, after the PII gate.
    pub body: String,
    /// The PII decisions taken when it was saved.
    pub pii_decisions: Vec<PiiDecision>,
    /// Who resolved its thread, and when (the thread's state, also on replies).
    pub resolved: Option<(String, DateTime<Utc>)>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

treven_mesh::text_enum! {
    /// What a notification is about.
    NotificationKind {
        /// A report was submitted for review.
        ReportSubmitted = "report_submitted",
        /// Changes were requested on a report.
        ChangesRequested = "changes_requested",
        /// A report was approved.
        ReportApproved = "report_approved",
        /// A review comment was added or answered.
        CommentAdded = "comment_added",
        /// The recipient was assigned as a report's reviewer.
        ReviewerAssigned = "reviewer_assigned",
    }
}

/// A notification to store with a change, for each of `recipients`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// What it is about.
    pub kind: NotificationKind,
    /// The report.
    pub report_id: Uuid,
    /// The comment, if any.
    pub comment_id: Option<Uuid>,
    /// The report version concerned (0 when none).
    pub version: i32,
    /// Who receives it (subjects), without duplicates and without the actor.
    pub recipients: Vec<String>,
}

/// One entry of a user's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// UUID.
    pub id: Uuid,
    /// The recipient's subject.
    pub recipient_id: String,
    /// What it is about.
    pub kind: NotificationKind,
    /// The report.
    pub report_id: Uuid,
    /// The comment, if any.
    pub comment_id: Option<Uuid>,
    /// Who acted (subject).
    pub actor_id: String,
    /// The report version concerned (0 when none).
    pub version: i32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the recipient read it.
    pub read_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// The WebSocket event payload (`notification` on `user:<recipient>`):
    /// the inbox entry as the REST API shows it (lowerCamelCase).
    pub fn event_data(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "reportId": self.report_id,
            "commentId": self.comment_id,
            "actorId": self.actor_id,
            "version": self.version,
            "createdAt": self.created_at,
        })
    }
}

/// The recipients of a change made by `actor`: each of `candidates` once,
/// in order, without `actor` and empty names, at most [`MAX_RECIPIENTS`].
pub fn recipients<'a>(actor: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for candidate in candidates {
        if candidate.is_empty() || candidate == actor || out.iter().any(|c| c == candidate) {
            continue;
        }
        if out.len() == MAX_RECIPIENTS {
            break;
        }
        out.push(candidate.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_skip_the_actor_duplicates_and_blanks() {
        let got = recipients("ann", ["bob", "ann", "", "bob", "cat"]);
        assert_eq!(got, vec!["bob".to_owned(), "cat".to_owned()]);
    }

    #[test]
    fn recipients_are_bounded() {
        let many: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
        let got = recipients("x", many.iter().map(String::as_str));
        assert_eq!(got.len(), MAX_RECIPIENTS);
    }
}
