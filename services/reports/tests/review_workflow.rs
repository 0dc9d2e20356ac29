//! The review workflow on real Postgres, tenants (users and roles), Redis
//! and documents (moto), with the agents double: review comments (threads,
//! the PII gate, resolve/reopen, pagination), reviewer assignment (checked
//! with tenants), request changes → revise → resubmit → a second analyst
//! approves, notification inboxes (stored with the change, pushed on
//! `user:<subject>`), and isolation between users and organisations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use tonic::Status;
use treven_mesh::events::{EventChannel, EventId, EventKind, EventPublisher};
use treven_mesh::{OrgId, Role};
use treven_proto::treven::reports::v1 as pb;

use support::*;

/// A member of `org` known to tenants: (subject, tenants user id, token).
struct Member {
    sub: String,
    user_id: String,
    token: String,
}

async fn member(stack: &Stack, org: OrgId, name: &str, role: Role) -> Member {
    use treven_tenants::model::{CognitoSub, Email, Name};
    let sub = uuid::Uuid::new_v4().to_string();
    let user = stack
        .tenants_store
        .admin_ensure_user(
            org,
            &Email::parse("email", &format!("{name}@example.org")).unwrap(),
            &Name::parse("name", name).unwrap(),
            role,
            Some(&CognitoSub::parse("sub", &sub).unwrap()),
        )
        .await
        .unwrap();
    Member {
        token: stack.token(org, &sub, role),
        sub,
        user_id: user.id.to_string(),
    }
}

async fn create(stack: &Stack, token: &str) -> String {
    let id = stack
        .reports
        .clone()
        .create_report(authed(
            token,
            pb::CreateReportRequest {
                scope: Some(scope("GB", "agriculture")),
                document_ids: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
        .id;
    stack.wait_generated(token, &id).await;
    id
}

fn comment_request(report: &str, body: &str) -> pb::AddReviewCommentRequest {
    pb::AddReviewCommentRequest {
        report_id: report.into(),
        body: body.into(),
        ..Default::default()
    }
}

async fn add(
    stack: &Stack,
    token: &str,
    request: pb::AddReviewCommentRequest,
) -> Result<pb::ReviewComment, Status> {
    stack
        .reports
        .clone()
        .add_review_comment(authed(token, request))
        .await
        .map(|r| r.into_inner().comment.unwrap())
}

async fn list(
    stack: &Stack,
    token: &str,
    request: pb::ListReviewCommentsRequest,
) -> Result<pb::ListReviewCommentsResponse, Status> {
    stack
        .reports
        .clone()
        .list_review_comments(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

async fn inbox(stack: &Stack, token: &str, unread_only: bool) -> pb::ListNotificationsResponse {
    stack
        .reports
        .clone()
        .list_notifications(authed(
            token,
            pb::ListNotificationsRequest {
                limit: 100,
                cursor: String::new(),
                unread_only,
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

fn kinds(inbox: &pb::ListNotificationsResponse) -> Vec<pb::NotificationKind> {
    inbox
        .items
        .iter()
        .map(|n| pb::NotificationKind::try_from(n.kind).unwrap())
        .collect()
}

async fn submit(stack: &Stack, token: &str, id: &str, version: i32) -> Result<pb::Report, Status> {
    stack
        .reports
        .clone()
        .submit_report(authed(
            token,
            pb::SubmitReportRequest {
                id: id.into(),
                version,
                override_justification: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

async fn approve(stack: &Stack, token: &str, id: &str, version: i32) -> Result<pb::Report, Status> {
    stack
        .reports
        .clone()
        .approve_report(authed(
            token,
            pb::ApproveReportRequest {
                id: id.into(),
                version,
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

async fn request_changes(
    stack: &Stack,
    token: &str,
    id: &str,
    version: i32,
    reason: &str,
    comment_ids: Vec<String>,
) -> Result<pb::Report, Status> {
    stack
        .reports
        .clone()
        .request_changes(authed(
            token,
            pb::RequestChangesRequest {
                id: id.into(),
                version,
                reason: reason.into(),
                comment_ids,
                pii_decisions: vec![],
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

async fn assign(stack: &Stack, token: &str, id: &str, user_id: &str) -> Result<pb::Report, Status> {
    stack
        .reports
        .clone()
        .assign_reviewer(authed(
            token,
            pb::AssignReviewerRequest {
                id: id.into(),
                user_id: user_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

/// The `notification` events pushed on `user:<sub>` in `org`.
async fn pushed(stack: &Stack, org: OrgId, sub: &str) -> Vec<serde_json::Value> {
    let publisher = EventPublisher::connect_lazy(&stack.redis_url).unwrap();
    publisher
        .replay(
            org,
            &EventChannel::User(sub.parse().unwrap()),
            EventId::ZERO,
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Notification)
        .map(|e| e.data)
        .collect()
}

fn actions(events: &[treven_proto::treven::tenants::v1::AuditEvent], action: &str) -> usize {
    events.iter().filter(|e| e.action == action).count()
}

#[tokio::test]
async fn comments_thread_pass_the_pii_gate_resolve_and_notify_the_author_and_participants() {
    let stack = Stack::start(1).await;
    let org = stack.org("comments").await;
    let author = member(&stack, org, "author", Role::Analyst).await;
    let reviewer = member(&stack, org, "reviewer", Role::Analyst).await;
    let viewer = member(&stack, org, "viewer", Role::Viewer).await;
    let id = create(&stack, &author.token).await;

    // The reviewer opens a thread on the money section of version 1.
    let root = add(
        &stack,
        &reviewer.token,
        pb::AddReviewCommentRequest {
            section: "money".into(),
            ..comment_request(&id, "  The remittance figure needs a second source.  ")
        },
    )
    .await
    .unwrap();
    assert_eq!(root.version, 1);
    assert_eq!(root.section, "money");
    assert_eq!(root.thread_id, root.id);
    assert_eq!(root.parent_id, "");
    assert_eq!(root.author_id, reviewer.sub);
    assert_eq!(root.body, "The remittance figure needs a second source.");
    assert!(!root.resolved);

    // The author answers in the thread: the reply takes the thread's
    // version and section.
    let reply = add(
        &stack,
        &author.token,
        pb::AddReviewCommentRequest {
            parent_id: root.id.clone(),
            ..comment_request(&id, "Added the ILO estimate as [c9].")
        },
    )
    .await
    .unwrap();
    assert_eq!(reply.thread_id, root.id);
    assert_eq!(reply.parent_id, root.id);
    assert_eq!((reply.version, reply.section.as_str()), (1, "money"));

    // A reply naming another section or version is refused.
    let other_section = add(
        &stack,
        &author.token,
        pb::AddReviewCommentRequest {
            parent_id: root.id.clone(),
            section: "demand".into(),
            ..comment_request(&id, "elsewhere")
        },
    )
    .await
    .expect_err("section of another thread");
    assert_eq!(
        code_of(&other_section),
        "VALIDATION_ERROR",
        "{other_section:?}"
    );
    let no_version = add(
        &stack,
        &author.token,
        pb::AddReviewCommentRequest {
            version: 7,
            ..comment_request(&id, "on a version that does not exist")
        },
    )
    .await
    .expect_err("no version 7");
    assert_eq!(code_of(&no_version), "NOT_FOUND", "{no_version:?}");
    let unknown_parent = add(
        &stack,
        &author.token,
        pb::AddReviewCommentRequest {
            parent_id: uuid::Uuid::new_v4().to_string(),
            ..comment_request(&id, "to nobody")
        },
    )
    .await
    .expect_err("no such parent");
    assert_eq!(code_of(&unknown_parent), "NOT_FOUND");

    // Bounded text; viewers read but do not write.
    let long = add(
        &stack,
        &author.token,
        comment_request(&id, &"x".repeat(4_001)),
    )
    .await
    .expect_err("too long");
    assert_eq!(code_of(&long), "VALIDATION_ERROR");
    assert_eq!(violated_fields(&long), vec!["body"]);
    let blank = add(&stack, &author.token, comment_request(&id, "   "))
        .await
        .expect_err("blank");
    assert_eq!(code_of(&blank), "VALIDATION_ERROR");
    let by_viewer = add(&stack, &viewer.token, comment_request(&id, "I agree"))
        .await
        .expect_err("viewers do not comment");
    assert_eq!(code_of(&by_viewer), "FORBIDDEN", "{by_viewer:?}");

    // Personal data blocks the comment (nothing stored), like a section
    // edit; redacting it unblocks.
    let text = "Call jane.doe@example.org about the payslips";
    let blocked = add(&stack, &reviewer.token, comment_request(&id, text))
        .await
        .expect_err("personal data");
    assert_eq!(code_of(&blocked), "PII_DETECTED", "{blocked:?}");
    let findings = pii_findings(&blocked);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].field_path, "body");
    assert_eq!(findings[0].placeholder, "[EMAIL]");
    let all = list(
        &stack,
        &viewer.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.items.len(), 2, "the blocked comment was not stored");
    let redacted = add(
        &stack,
        &reviewer.token,
        pb::AddReviewCommentRequest {
            pii_decisions: vec![pb::PiiDecision {
                finding_id: findings[0].id.clone(),
                action: pb::PiiAction::Redact.into(),
                justification: String::new(),
            }],
            ..comment_request(&id, text)
        },
    )
    .await
    .unwrap();
    assert_eq!(redacted.body, "Call [EMAIL] about the payslips");
    assert_eq!(redacted.pii_decisions.len(), 1);

    // Listing: oldest first, paginated, by version, unresolved only.
    let first_page = list(
        &stack,
        &viewer.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = first_page.items.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec![root.id.as_str(), reply.id.as_str()]);
    assert!(!first_page.next_cursor.is_empty());
    let second_page = list(
        &stack,
        &viewer.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            limit: 2,
            cursor: first_page.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(second_page.items.len(), 1);
    assert_eq!(second_page.items[0].id, redacted.id);
    assert!(second_page.next_cursor.is_empty());
    let on_version_2 = list(
        &stack,
        &viewer.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            version: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(on_version_2.items.is_empty());

    // Resolving through a reply resolves the thread; resolving again
    // changes nothing; reopening opens it.
    let resolved = stack
        .reports
        .clone()
        .resolve_review_comment(authed(
            &author.token,
            pb::ResolveReviewCommentRequest {
                report_id: id.clone(),
                comment_id: reply.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .comment
        .unwrap();
    assert_eq!(resolved.id, root.id);
    assert!(resolved.resolved);
    assert_eq!(resolved.resolved_by, author.sub);
    let unresolved = list(
        &stack,
        &author.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            unresolved_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = unresolved.items.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![redacted.id.as_str()],
        "the resolved thread is hidden"
    );
    stack
        .reports
        .clone()
        .resolve_review_comment(authed(
            &author.token,
            pb::ResolveReviewCommentRequest {
                report_id: id.clone(),
                comment_id: root.id.clone(),
            },
        ))
        .await
        .unwrap();
    let reopened = stack
        .reports
        .clone()
        .reopen_review_comment(authed(
            &reviewer.token,
            pb::ReopenReviewCommentRequest {
                report_id: id.clone(),
                comment_id: root.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .comment
        .unwrap();
    assert!(!reopened.resolved);
    assert_eq!(reopened.resolved_by, "");
    let viewer_resolves = stack
        .reports
        .clone()
        .resolve_review_comment(authed(
            &viewer.token,
            pb::ResolveReviewCommentRequest {
                report_id: id.clone(),
                comment_id: root.id.clone(),
            },
        ))
        .await
        .expect_err("viewers do not resolve");
    assert_eq!(code_of(&viewer_resolves), "FORBIDDEN");

    // Notifications: the author of the report for each of the reviewer's
    // comments; the reviewer (a participant of the thread) for the reply.
    let author_inbox = inbox(&stack, &author.token, false).await;
    assert_eq!(
        kinds(&author_inbox),
        vec![pb::NotificationKind::CommentAdded; 2],
        "{author_inbox:?}"
    );
    assert_eq!(author_inbox.items[1].comment_id, root.id);
    assert_eq!(author_inbox.items[0].comment_id, redacted.id);
    assert_eq!(author_inbox.items[0].actor_id, reviewer.sub);
    assert_eq!(author_inbox.unread_count, 2);
    let reviewer_inbox = inbox(&stack, &reviewer.token, false).await;
    assert_eq!(
        kinds(&reviewer_inbox),
        vec![pb::NotificationKind::CommentAdded]
    );
    assert_eq!(reviewer_inbox.items[0].comment_id, reply.id);
    assert!(inbox(&stack, &viewer.token, false).await.items.is_empty());
    // ... and each was pushed on the recipient's channel.
    let events = pushed(&stack, org, &author.sub).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["kind"], "comment_added");
    assert_eq!(events[0]["commentId"], root.id.as_str());
    assert_eq!(events[0]["reportId"], id.as_str());

    // Audited: three comments, one block, one decision, resolve (once),
    // reopen.
    let audit = stack.audit_actions(&author.token, &id).await;
    assert_eq!(actions(&audit, "report.comment.add"), 3, "{audit:?}");
    assert_eq!(actions(&audit, "report.pii_blocked"), 1);
    assert_eq!(actions(&audit, "report.pii_decision"), 1);
    assert_eq!(actions(&audit, "report.comment.resolve"), 1);
    assert_eq!(actions(&audit, "report.comment.reopen"), 1);
    stack.stop().await;
}

#[tokio::test]
async fn changes_requested_send_the_report_back_and_a_second_analyst_approves_the_revision() {
    let stack = Stack::start(1).await;
    let org = stack.org("review").await;
    let other_org = stack.org("elsewhere").await;
    let author = member(&stack, org, "author", Role::Analyst).await;
    let reviewer = member(&stack, org, "reviewer", Role::Analyst).await;
    let viewer = member(&stack, org, "viewer", Role::Viewer).await;
    let stranger = member(&stack, other_org, "stranger", Role::Analyst).await;
    let id = create(&stack, &author.token).await;

    // Reviewer assignment: only an analyst or admin of the organisation
    // who did not write the report.
    let own = assign(&stack, &author.token, &id, &author.user_id)
        .await
        .expect_err("the author");
    assert_eq!(code_of(&own), "VALIDATION_ERROR", "{own:?}");
    let to_viewer = assign(&stack, &author.token, &id, &viewer.user_id)
        .await
        .expect_err("a viewer");
    assert_eq!(code_of(&to_viewer), "VALIDATION_ERROR", "{to_viewer:?}");
    let to_stranger = assign(&stack, &author.token, &id, &stranger.user_id)
        .await
        .expect_err("another organisation's user");
    assert_eq!(code_of(&to_stranger), "NOT_FOUND", "{to_stranger:?}");
    let by_viewer = assign(&stack, &viewer.token, &id, &reviewer.user_id)
        .await
        .expect_err("viewers do not assign");
    assert_eq!(code_of(&by_viewer), "FORBIDDEN");
    let assigned = assign(&stack, &author.token, &id, &reviewer.user_id)
        .await
        .unwrap();
    let shown = assigned.reviewer.unwrap();
    assert_eq!(shown.reviewer_id, reviewer.sub);
    assert_eq!(shown.reviewer_user_id, reviewer.user_id);
    assert_eq!(shown.assigned_by, author.sub);
    assert_eq!(
        kinds(&inbox(&stack, &reviewer.token, false).await),
        vec![pb::NotificationKind::ReviewerAssigned]
    );

    // A comment to address, then the author submits: the reviewer is told.
    let comment = add(
        &stack,
        &reviewer.token,
        pb::AddReviewCommentRequest {
            section: "recruitment".into(),
            ..comment_request(&id, "Which agencies? Name the sector, not people.")
        },
    )
    .await
    .unwrap();
    let early = request_changes(&stack, &reviewer.token, &id, 1, "not yet", vec![])
        .await
        .expect_err("a draft");
    assert_eq!(code_of(&early), "FAILED_PRECONDITION", "{early:?}");
    submit(&stack, &author.token, &id, 1).await.unwrap();
    let reviewer_inbox = inbox(&stack, &reviewer.token, false).await;
    assert_eq!(
        kinds(&reviewer_inbox)[0],
        pb::NotificationKind::ReportSubmitted
    );

    // The submitter cannot send their own submission back; a stale version
    // is a conflict; an unknown comment is not found.
    let own_request = request_changes(&stack, &author.token, &id, 1, "second thoughts", vec![])
        .await
        .expect_err("the submitter");
    assert_eq!(code_of(&own_request), "FORBIDDEN", "{own_request:?}");
    let stale = request_changes(&stack, &reviewer.token, &id, 2, "stale", vec![])
        .await
        .expect_err("stale");
    assert_eq!(code_of(&stale), "CONFLICT");
    let unknown = request_changes(
        &stack,
        &reviewer.token,
        &id,
        1,
        "see the comment",
        vec![uuid::Uuid::new_v4().to_string()],
    )
    .await
    .expect_err("unknown comment");
    assert_eq!(code_of(&unknown), "NOT_FOUND");

    // The reviewer requests changes: back to draft, the reason stored as a
    // comment on the version, the submitter told.
    let sent_back = request_changes(
        &stack,
        &reviewer.token,
        &id,
        1,
        "Please address the recruitment comment.",
        vec![comment.id.clone()],
    )
    .await
    .unwrap();
    assert_eq!(sent_back.status, pb::ReportStatus::Draft as i32);
    let author_inbox = inbox(&stack, &author.token, true).await;
    let changes = author_inbox
        .items
        .iter()
        .find(|n| n.kind == pb::NotificationKind::ChangesRequested as i32)
        .expect("changes requested");
    assert_eq!(changes.actor_id, reviewer.sub);
    let comments = list(
        &stack,
        &author.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let reason = comments
        .items
        .iter()
        .find(|c| c.id == changes.comment_id)
        .expect("the reason is a comment");
    assert_eq!(reason.body, "Please address the recruitment comment.");
    assert_eq!(reason.version, 1);

    // The author revises and submits again.
    let current = stack.wait_generated(&author.token, &id).await;
    let mut content = current.content.unwrap();
    // One more sentence in the first (cited) paragraph.
    content.recruitment = format!("Agencies charge placement fees. {}", content.recruitment);
    let revised = stack
        .reports
        .clone()
        .update_section(authed(
            &author.token,
            pb::UpdateSectionRequest {
                id: id.clone(),
                section: "recruitment".into(),
                content: Some(only_section(&content, "recruitment")),
                reason: "addressed the review".into(),
                base_version: 1,
                pii_decisions: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!(revised.number, 2);
    submit(&stack, &author.token, &id, 2).await.unwrap();

    // Four-eyes still holds: the author cannot approve; the reviewer does.
    let self_approval = approve(&stack, &author.token, &id, 2)
        .await
        .expect_err("the submitter");
    assert_eq!(code_of(&self_approval), "FORBIDDEN");
    let approved = approve(&stack, &reviewer.token, &id, 2).await.unwrap();
    assert_eq!(approved.status, pb::ReportStatus::Approved as i32);
    assert_eq!(approved.approval.unwrap().approved_by, reviewer.sub);
    // Once approved, the reviewer can no longer be changed.
    let late = assign(&stack, &author.token, &id, &reviewer.user_id)
        .await
        .expect_err("approved");
    assert_eq!(code_of(&late), "FAILED_PRECONDITION");

    // The author's inbox: comment, changes requested, approved (newest
    // first); marked read one by one or all at once, by them only.
    let author_inbox = inbox(&stack, &author.token, false).await;
    assert_eq!(
        kinds(&author_inbox),
        vec![
            pb::NotificationKind::ReportApproved,
            pb::NotificationKind::ChangesRequested,
            pb::NotificationKind::CommentAdded,
        ]
    );
    assert_eq!(author_inbox.unread_count, 3);
    let first = author_inbox.items[0].id.clone();
    let not_theirs = stack
        .reports
        .clone()
        .mark_notification_read(authed(
            &reviewer.token,
            pb::MarkNotificationReadRequest { id: first.clone() },
        ))
        .await
        .expect_err("someone else's notification");
    assert_eq!(code_of(&not_theirs), "NOT_FOUND");
    let read = stack
        .reports
        .clone()
        .mark_notification_read(authed(
            &author.token,
            pb::MarkNotificationReadRequest { id: first.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .notification
        .unwrap();
    assert!(read.read && read.read_at.is_some());
    let unread = inbox(&stack, &author.token, true).await;
    assert_eq!(unread.items.len(), 2);
    assert_eq!(unread.unread_count, 2);
    let marked = stack
        .reports
        .clone()
        .mark_all_notifications_read(authed(
            &author.token,
            pb::MarkAllNotificationsReadRequest {},
        ))
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 2);
    let after = inbox(&stack, &author.token, false).await;
    assert_eq!(after.unread_count, 0);
    assert!(after.items.iter().all(|n| n.read));
    // The reviewer's own notifications are untouched.
    assert!(inbox(&stack, &reviewer.token, true).await.unread_count > 0);

    let audit = stack.audit_actions(&author.token, &id).await;
    for action in [
        "report.reviewer.assign",
        "report.changes_requested",
        "report.approve",
    ] {
        assert_eq!(actions(&audit, action), 1, "{action}: {audit:?}");
    }
    assert_eq!(actions(&audit, "report.submit"), 2);
    stack.stop().await;
}

#[tokio::test]
async fn a_submission_without_a_reviewer_notifies_the_other_analysts_and_admins() {
    let stack = Stack::start(1).await;
    let org = stack.org("no-reviewer").await;
    let author = member(&stack, org, "author", Role::Analyst).await;
    let analyst = member(&stack, org, "analyst", Role::Analyst).await;
    let admin = member(&stack, org, "admin", Role::Admin).await;
    let viewer = member(&stack, org, "viewer", Role::Viewer).await;
    let id = create(&stack, &author.token).await;
    submit(&stack, &author.token, &id, 1).await.unwrap();
    for who in [&analyst, &admin] {
        let got = inbox(&stack, &who.token, false).await;
        assert_eq!(kinds(&got), vec![pb::NotificationKind::ReportSubmitted]);
        assert_eq!(got.items[0].report_id, id);
        assert_eq!(got.items[0].version, 1);
    }
    assert!(inbox(&stack, &author.token, false).await.items.is_empty());
    assert!(inbox(&stack, &viewer.token, false).await.items.is_empty());
    let events = pushed(&stack, org, &admin.sub).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "report_submitted");
    stack.stop().await;
}

#[tokio::test]
async fn another_organisation_reaches_no_comment_reviewer_or_notification() {
    let stack = Stack::start(1).await;
    let org = stack.org("owner").await;
    let other = stack.org("other").await;
    let author = member(&stack, org, "author", Role::Analyst).await;
    let reviewer = member(&stack, org, "reviewer", Role::Analyst).await;
    let stranger = member(&stack, other, "stranger", Role::Admin).await;
    let id = create(&stack, &author.token).await;
    let comment = add(
        &stack,
        &reviewer.token,
        comment_request(&id, "Check the dates."),
    )
    .await
    .unwrap();
    let notification = inbox(&stack, &author.token, false).await.items[0]
        .id
        .clone();

    let listed = list(
        &stack,
        &stranger.token,
        pb::ListReviewCommentsRequest {
            report_id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect_err("another organisation's report");
    assert_eq!(code_of(&listed), "NOT_FOUND");
    let added = add(&stack, &stranger.token, comment_request(&id, "hello"))
        .await
        .expect_err("comment on another organisation's report");
    assert_eq!(code_of(&added), "NOT_FOUND");
    let resolved = stack
        .reports
        .clone()
        .resolve_review_comment(authed(
            &stranger.token,
            pb::ResolveReviewCommentRequest {
                report_id: id.clone(),
                comment_id: comment.id.clone(),
            },
        ))
        .await
        .expect_err("resolve elsewhere");
    assert_eq!(code_of(&resolved), "NOT_FOUND");
    let assigned = assign(&stack, &stranger.token, &id, &stranger.user_id)
        .await
        .expect_err("assign elsewhere");
    assert_eq!(code_of(&assigned), "NOT_FOUND");
    let unassigned = stack
        .reports
        .clone()
        .unassign_reviewer(authed(
            &stranger.token,
            pb::UnassignReviewerRequest { id: id.clone() },
        ))
        .await
        .expect_err("unassign elsewhere");
    assert_eq!(code_of(&unassigned), "NOT_FOUND");
    let changes = request_changes(&stack, &stranger.token, &id, 1, "no", vec![])
        .await
        .expect_err("request changes elsewhere");
    assert_eq!(code_of(&changes), "NOT_FOUND");
    let marked = stack
        .reports
        .clone()
        .mark_notification_read(authed(
            &stranger.token,
            pb::MarkNotificationReadRequest {
                id: notification.clone(),
            },
        ))
        .await
        .expect_err("another organisation's notification");
    assert_eq!(code_of(&marked), "NOT_FOUND");
    assert!(inbox(&stack, &stranger.token, false).await.items.is_empty());
    let all = stack
        .reports
        .clone()
        .mark_all_notifications_read(authed(
            &stranger.token,
            pb::MarkAllNotificationsReadRequest {},
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.marked, 0);
    // Nothing of the owner's changed.
    assert_eq!(inbox(&stack, &author.token, true).await.unread_count, 1);
    assert_eq!(
        list(
            &stack,
            &author.token,
            pb::ListReviewCommentsRequest {
                report_id: id.clone(),
                unresolved_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .len(),
        1
    );
    // A same-organisation colleague's cursor is not the author's either.
    let page = stack
        .reports
        .clone()
        .list_notifications(authed(
            &reviewer.token,
            pb::ListNotificationsRequest {
                limit: 1,
                cursor: String::new(),
                unread_only: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(page.items.iter().all(|n| n.id != notification));
    stack.stop().await;
}
