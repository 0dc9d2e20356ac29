//! The review workflow's handlers (comments, request changes, reviewer,
//! notifications): proto requests to domain values and back. Called from
//! the service implementation in `api.rs`.

use tonic::Request;
use treven_mesh::ServiceError;
use treven_mesh::context::context_of;
use treven_mesh::wire::timestamp;
use treven_proto::treven::reports::v1 as pb;

use super::convert::{decision_to_pb, decisions_from_pb, report_to_pb};
use super::{Reply, ReportsGrpc, reply};
use crate::app::{CommentDraft, parse_comment_text};
use crate::model::{Comment, Notification, NotificationKind, Section, parse_id};
use crate::store::CommentFilter;

fn comment_to_pb(c: Comment) -> pb::ReviewComment {
    let (resolved_by, resolved_at) = match c.resolved {
        Some((by, at)) => (by, Some(timestamp(at))),
        None => (String::new(), None),
    };
    pb::ReviewComment {
        id: c.id.to_string(),
        report_id: c.report_id.to_string(),
        version: c.version,
        section: c.section.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        thread_id: c.thread_id.to_string(),
        parent_id: c.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        author_id: c.author_id,
        body: c.body,
        resolved: resolved_at.is_some(),
        resolved_by,
        resolved_at,
        created_at: Some(timestamp(c.created_at)),
        pii_decisions: c.pii_decisions.iter().map(decision_to_pb).collect(),
    }
}

fn notification_kind_to_pb(kind: NotificationKind) -> pb::NotificationKind {
    match kind {
        NotificationKind::ReportSubmitted => pb::NotificationKind::ReportSubmitted,
        NotificationKind::ChangesRequested => pb::NotificationKind::ChangesRequested,
        NotificationKind::ReportApproved => pb::NotificationKind::ReportApproved,
        NotificationKind::CommentAdded => pb::NotificationKind::CommentAdded,
        NotificationKind::ReviewerAssigned => pb::NotificationKind::ReviewerAssigned,
    }
}

fn notification_to_pb(n: Notification) -> pb::Notification {
    pb::Notification {
        id: n.id.to_string(),
        kind: notification_kind_to_pb(n.kind).into(),
        report_id: n.report_id.to_string(),
        comment_id: n.comment_id.map(|c| c.to_string()).unwrap_or_default(),
        actor_id: n.actor_id,
        version: n.version,
        created_at: Some(timestamp(n.created_at)),
        read: n.read_at.is_some(),
        read_at: n.read_at.map(timestamp),
    }
}

fn optional_section(raw: &str) -> Result<Option<Section>, ServiceError> {
    if raw.is_empty() {
        return Ok(None);
    }
    Section::parse(raw)
        .map(Some)
        .ok_or_else(|| ServiceError::invalid_field("section", "is not a section key"))
}

fn non_negative(field: &str, value: i32) -> Result<i32, ServiceError> {
    if value < 0 {
        return Err(ServiceError::invalid_field(field, "must not be negative"));
    }
    Ok(value)
}

impl ReportsGrpc {
    pub(super) async fn handle_add_review_comment(
        &self,
        request: Request<pb::AddReviewCommentRequest>,
    ) -> Reply<pb::AddReviewCommentResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let report_id = parse_id("report_id", &m.report_id)?;
            let parent_id = match m.parent_id.as_str() {
                "" => None,
                raw => Some(parse_id("parent_id", raw)?),
            };
            let draft = CommentDraft {
                body: parse_comment_text("body", &m.body)?,
                version: non_negative("version", m.version)?,
                section: optional_section(&m.section)?,
                parent_id,
                decisions: decisions_from_pb(&m.pii_decisions)?,
            };
            self.reports.add_comment(&context, report_id, draft).await
        }
        .await;
        reply(result.map(|c| pb::AddReviewCommentResponse {
            comment: Some(comment_to_pb(c)),
        }))
    }

    pub(super) async fn handle_list_review_comments(
        &self,
        request: Request<pb::ListReviewCommentsRequest>,
    ) -> Reply<pb::ListReviewCommentsResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let report_id = parse_id("report_id", &m.report_id)?;
            let filter = CommentFilter {
                version: match non_negative("version", m.version)? {
                    0 => None,
                    v => Some(v),
                },
                unresolved_only: m.unresolved_only,
            };
            self.reports
                .comments(&context, report_id, filter, m.limit, &m.cursor)
                .await
        }
        .await;
        reply(result.map(|page| pb::ListReviewCommentsResponse {
            items: page.items.into_iter().map(comment_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    pub(super) async fn handle_set_comment_resolved(
        &self,
        context: treven_mesh::MeshContext,
        report_id: &str,
        comment_id: &str,
        resolve: bool,
    ) -> Result<pb::ReviewComment, crate::app::ReportsError> {
        let report_id = parse_id("report_id", report_id)?;
        let comment_id = parse_id("comment_id", comment_id)?;
        self.reports
            .set_comment_resolved(&context, report_id, comment_id, resolve)
            .await
            .map(comment_to_pb)
    }

    pub(super) async fn handle_request_changes(
        &self,
        request: Request<pb::RequestChangesRequest>,
    ) -> Reply<pb::RequestChangesResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let reason = parse_comment_text("reason", &m.reason)?;
            if m.comment_ids.len() > crate::model::MAX_REFERENCED_COMMENTS {
                return Err(ServiceError::invalid_field(
                    "comment_ids",
                    format!("at most {} comments", crate::model::MAX_REFERENCED_COMMENTS),
                )
                .into());
            }
            let comment_ids = m
                .comment_ids
                .iter()
                .enumerate()
                .map(|(i, raw)| parse_id(&format!("comment_ids[{i}]"), raw))
                .collect::<Result<Vec<_>, _>>()?;
            let decisions = decisions_from_pb(&m.pii_decisions)?;
            self.reports
                .request_changes(&context, id, m.version, reason, comment_ids, decisions)
                .await
        }
        .await;
        reply(result.map(|r| pb::RequestChangesResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    pub(super) async fn handle_assign_reviewer(
        &self,
        request: Request<pb::AssignReviewerRequest>,
    ) -> Reply<pb::AssignReviewerResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let user_id = parse_id("user_id", &m.user_id)?;
            self.reports.assign_reviewer(&context, id, user_id).await
        }
        .await;
        reply(result.map(|r| pb::AssignReviewerResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    pub(super) async fn handle_unassign_reviewer(
        &self,
        request: Request<pb::UnassignReviewerRequest>,
    ) -> Reply<pb::UnassignReviewerResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            self.reports.unassign_reviewer(&context, id).await
        }
        .await;
        reply(result.map(|r| pb::UnassignReviewerResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    pub(super) async fn handle_list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Reply<pb::ListNotificationsResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = self
            .reports
            .notifications(&context, m.unread_only, m.limit, &m.cursor)
            .await;
        reply(result.map(|(page, unread)| pb::ListNotificationsResponse {
            items: page.items.into_iter().map(notification_to_pb).collect(),
            next_cursor: page.next_cursor,
            unread_count: i32::try_from(unread).unwrap_or(i32::MAX),
        }))
    }

    pub(super) async fn handle_mark_notification_read(
        &self,
        request: Request<pb::MarkNotificationReadRequest>,
    ) -> Reply<pb::MarkNotificationReadResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            self.reports.mark_notification_read(&context, id).await
        }
        .await;
        reply(result.map(|n| pb::MarkNotificationReadResponse {
            notification: Some(notification_to_pb(n)),
        }))
    }

    pub(super) async fn handle_mark_all_notifications_read(
        &self,
        request: Request<pb::MarkAllNotificationsReadRequest>,
    ) -> Reply<pb::MarkAllNotificationsReadResponse> {
        let context = context_of(&request)?;
        let result = self.reports.mark_all_notifications_read(&context).await;
        reply(result.map(|marked| pb::MarkAllNotificationsReadResponse {
            marked: i32::try_from(marked).unwrap_or(i32::MAX),
        }))
    }
}

/// A resolve/reopen answer.
pub(super) fn resolved_reply<T>(
    result: Result<pb::ReviewComment, crate::app::ReportsError>,
    wrap: impl FnOnce(pb::ReviewComment) -> T,
) -> Reply<T> {
    reply(result.map(wrap))
}
