//! Review governance on real Postgres, tenants and documents (moto), with
//! the agents double: the blocking quality gates at submit (and an admin's
//! audited override), and four-eyes approval (and the organisation setting
//! that allows self-approval, audited).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use treven_mesh::wire::struct_to_json;
use treven_mesh::{OrgId, Principal, Role};
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use support::*;

async fn create(stack: &Stack, token: &str, sector: &str) -> String {
    let id = stack
        .reports
        .clone()
        .create_report(authed(
            token,
            pb::CreateReportRequest {
                scope: Some(scope("GB", sector)),
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

async fn submit(
    stack: &Stack,
    token: &str,
    id: &str,
    justification: &str,
) -> Result<pb::Report, tonic::Status> {
    stack
        .reports
        .clone()
        .submit_report(authed(
            token,
            pb::SubmitReportRequest {
                id: id.into(),
                version: 1,
                override_justification: justification.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

async fn approve(stack: &Stack, token: &str, id: &str) -> Result<pb::Report, tonic::Status> {
    stack
        .reports
        .clone()
        .approve_report(authed(
            token,
            pb::ApproveReportRequest {
                id: id.into(),
                version: 1,
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

async fn status_of(stack: &Stack, token: &str, id: &str) -> i32 {
    stack
        .reports
        .clone()
        .get_report(authed(
            token,
            pb::GetReportRequest {
                id: id.into(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
        .status
}

/// The details of the one audit entry `action` on report `id`.
async fn audited(stack: &Stack, token: &str, id: &str, action: &str) -> serde_json::Value {
    let events: Vec<_> = stack
        .audit_actions(token, id)
        .await
        .into_iter()
        .filter(|e| e.action == action)
        .collect();
    assert_eq!(events.len(), 1, "one {action} entry: {events:?}");
    struct_to_json(events[0].details.as_ref().unwrap())
}

async fn set_settings(
    stack: &Stack,
    admin: &str,
    settings: serde_json::Value,
) -> Result<(), tonic::Status> {
    stack
        .tenants
        .clone()
        .update_organisation(authed(
            &stack.retarget(admin, Principal::Tenants),
            tenants::UpdateOrganisationRequest {
                organisation: Some(tenants::Organisation {
                    settings: Some(treven_mesh::wire::json_to_struct(&settings)),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["settings".into()],
                }),
            },
        ))
        .await
        .map(|_| ())
}

fn tokens(stack: &Stack, org: OrgId) -> (String, String, String, String) {
    (
        stack.token(org, "analyst-1", Role::Analyst),
        stack.token(org, "analyst-2", Role::Analyst),
        stack.token(org, "analyst-3", Role::Analyst),
        stack.token(org, "admin-1", Role::Admin),
    )
}

#[tokio::test]
async fn a_draft_citing_nothing_cannot_be_submitted_unless_an_admin_overrides_it() {
    let stack = Stack::start(1).await;
    let org = stack.org("gate").await;
    let (analyst, _, _, admin) = tokens(&stack, org);

    // Generated with no usable sources: nothing is cited, and the version's
    // own checks say so (a blocking check).
    let id = create(&stack, &analyst, SECTOR_UNCITED).await;
    let got = stack
        .reports
        .clone()
        .get_report(authed(
            &analyst,
            pb::GetReportRequest {
                id: id.clone(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(got.content.unwrap().citations.is_empty());
    let cited = got
        .version
        .unwrap()
        .quality_checks
        .into_iter()
        .find(|c| c.kind == pb::QualityCheckKind::ClaimsCited as i32)
        .unwrap();
    assert!(!cited.passed && cited.blocking, "{cited:?}");
    assert!(cited.detail.contains("not cited"), "{cited:?}");

    // The analyst's submit is refused, naming the check; nothing changes.
    let refused = submit(&stack, &analyst, &id, "")
        .await
        .expect_err("uncited");
    assert_eq!(code_of(&refused), "FAILED_PRECONDITION", "{refused:?}");
    assert!(refused.message().contains("claims_cited"), "{refused:?}");
    let failed = failed_checks(&refused);
    let kinds: Vec<i32> = failed.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![pb::QualityCheckKind::ClaimsCited as i32],
        "{failed:?}"
    );
    assert!(failed.iter().all(|c| c.blocking && !c.passed));
    assert_eq!(
        status_of(&stack, &analyst, &id).await,
        pb::ReportStatus::Draft as i32
    );

    // Analysts cannot override; an admin needs a real justification.
    let forbidden = submit(&stack, &analyst, &id, "The sources are attached offline.")
        .await
        .expect_err("analyst override");
    assert_eq!(code_of(&forbidden), "FORBIDDEN", "{forbidden:?}");
    let short = submit(&stack, &admin, &id, "ok").await.expect_err("short");
    assert_eq!(code_of(&short), "VALIDATION_ERROR", "{short:?}");
    assert_eq!(violated_fields(&short), vec!["override_justification"]);
    let long = submit(&stack, &admin, &id, &"x".repeat(1_001))
        .await
        .expect_err("long");
    assert_eq!(violated_fields(&long), vec!["override_justification"]);
    assert!(
        !stack
            .audit_actions(&admin, &id)
            .await
            .iter()
            .any(|e| e.action == "report.submit" || e.action == "report.quality_override")
    );

    // The admin's override goes through and is audited with the checks.
    let justification = "Briefing requested by the regulator; citations follow in v2.";
    let submitted = submit(&stack, &admin, &id, justification).await.unwrap();
    assert_eq!(submitted.status, pb::ReportStatus::InReview as i32);
    let submission = submitted.submission.unwrap();
    assert_eq!(
        (submission.submitted_by.as_str(), submission.version),
        ("admin-1", 1)
    );
    let details = audited(&stack, &admin, &id, "report.quality_override").await;
    assert_eq!(details["justification"], justification, "{details}");
    assert_eq!(
        details["failed_checks"][0]["check"], "claims_cited",
        "{details}"
    );
    assert_eq!(details["failed_checks"].as_array().unwrap().len(), 1);
    audited(&stack, &admin, &id, "report.submit").await;
    stack.stop().await;
}

#[tokio::test]
async fn a_report_passing_every_blocking_check_is_submitted_without_override() {
    let stack = Stack::start(1).await;
    let org = stack.org("pass").await;
    let (analyst, ..) = tokens(&stack, org);
    let id = create(&stack, &analyst, "agriculture").await;
    // A justification is ignored when nothing fails (and not audited).
    let submitted = submit(&stack, &analyst, &id, "not needed at all")
        .await
        .unwrap();
    assert_eq!(submitted.status, pb::ReportStatus::InReview as i32);
    let actions: Vec<String> = stack
        .audit_actions(&analyst, &id)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"report.submit".to_owned()), "{actions:?}");
    assert!(!actions.contains(&"report.quality_override".to_owned()));
    stack.stop().await;
}

#[tokio::test]
async fn self_approval_is_refused_by_default_and_a_second_analyst_approves() {
    let stack = Stack::start(1).await;
    let org = stack.org("foureyes").await;
    let (author, submitter, reviewer, _) = tokens(&stack, org);

    // analyst-1 wrote version 1 (generated at their request); analyst-2
    // submits it.
    let id = create(&stack, &author, "agriculture").await;
    let submitted = submit(&stack, &submitter, &id, "").await.unwrap();
    assert_eq!(submitted.submission.unwrap().submitted_by, "analyst-2");

    // Neither the submitter nor the author may approve it.
    for (who, token) in [("submitter", &submitter), ("author", &author)] {
        let refused = approve(&stack, token, &id).await.expect_err(who);
        assert_eq!(code_of(&refused), "FORBIDDEN", "{who}: {refused:?}");
        assert!(
            refused
                .message()
                .contains("a report cannot be approved by the analyst who submitted or wrote it"),
            "{who}: {refused:?}"
        );
    }
    assert_eq!(
        status_of(&stack, &author, &id).await,
        pb::ReportStatus::InReview as i32
    );

    // A second analyst approves.
    let approved = approve(&stack, &reviewer, &id).await.unwrap();
    assert_eq!(approved.status, pb::ReportStatus::Approved as i32);
    assert_eq!(approved.approval.unwrap().approved_by, "analyst-3");
    let details = audited(&stack, &author, &id, "report.approve").await;
    assert_eq!(details["self_approval"], false, "{details}");
    stack.stop().await;
}

#[tokio::test]
async fn the_organisation_may_allow_self_approval_and_it_is_audited() {
    let stack = Stack::start(1).await;
    let org = stack.org("solo").await;
    let (analyst, _, _, admin) = tokens(&stack, org);

    // The setting is a boolean; analysts cannot change it.
    let bad = set_settings(
        &stack,
        &admin,
        serde_json::json!({"allow_self_approval": "yes"}),
    )
    .await
    .expect_err("not a boolean");
    assert_eq!(code_of(&bad), "VALIDATION_ERROR", "{bad:?}");
    assert_eq!(
        violated_fields(&bad),
        vec!["organisation.settings.allow_self_approval"]
    );
    let denied = set_settings(
        &stack,
        &analyst,
        serde_json::json!({"allow_self_approval": true}),
    )
    .await
    .expect_err("analyst");
    assert_eq!(code_of(&denied), "FORBIDDEN", "{denied:?}");

    // Explicitly false is the default: refused.
    set_settings(
        &stack,
        &admin,
        serde_json::json!({"allow_self_approval": false}),
    )
    .await
    .unwrap();
    let first = create(&stack, &analyst, "agriculture").await;
    submit(&stack, &analyst, &first, "").await.unwrap();
    let refused = approve(&stack, &analyst, &first)
        .await
        .expect_err("default");
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused:?}");

    // Allowed: the same analyst writes, submits and approves, and the
    // approval says it was a self-approval.
    set_settings(
        &stack,
        &admin,
        serde_json::json!({"allow_self_approval": true}),
    )
    .await
    .unwrap();
    let approved = approve(&stack, &analyst, &first).await.unwrap();
    assert_eq!(approved.status, pb::ReportStatus::Approved as i32);
    assert_eq!(approved.approval.unwrap().approved_by, "analyst-1");
    let details = audited(&stack, &analyst, &first, "report.approve").await;
    assert_eq!(details["self_approval"], true, "{details}");
    stack.stop().await;
}
