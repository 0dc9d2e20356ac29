//! Integration tests on real Postgres, Redis, tenants and documents (moto),
//! with an agents double.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read as _;
use std::time::Duration;

use tonic::Code;
use treven_mesh::{Principal, Role};
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use support::*;

async fn create(stack: &Stack, token: &str, country: &str, sector: &str) -> String {
    stack
        .reports
        .clone()
        .create_report(authed(
            token,
            pb::CreateReportRequest {
                scope: Some(scope(country, sector)),
                document_ids: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
        .id
}

fn edit(id: &str, section: &str, text: &str, base: i32) -> pb::UpdateSectionRequest {
    let mut content = pb::ReportContent::default();
    match section {
        "money" => content.money = text.into(),
        "demand" => content.demand = text.into(),
        _ => content.introduction = text.into(),
    }
    content.citations = vec![pb::Citation {
        id: "m1".into(),
        section: section.into(),
        claim: "cash".into(),
        source: Some(pb::SourceReference {
            source_id: "s".into(),
            label: "FATF (2023)".into(),
            url: String::new(),
        }),
    }];
    pb::UpdateSectionRequest {
        id: id.into(),
        section: section.into(),
        content: Some(content),
        reason: "tighter wording".into(),
        base_version: base,
        pii_decisions: vec![],
    }
}

#[tokio::test]
async fn a_report_is_generated_edited_gated_approved_and_exported() {
    let stack = Stack::start(1).await;
    let org = stack.org("alpha").await;
    let analyst = stack.token(org, "analyst-1", Role::Analyst);
    let mut reports = stack.reports.clone();

    // Progress events reach Redis.
    let redis = redis_client(&stack.redis_url);
    let id = create(&stack, &analyst, "GB", "agriculture").await;
    let got = stack.wait_generated(&analyst, &id).await;
    let report = got.report.unwrap();
    assert_eq!(report.status, pb::ReportStatus::Draft as i32);
    assert_eq!(report.latest_version, 1);
    assert_eq!(report.title, "LABOUR EXPLOITATION IN GB AGRICULTURE");
    let version = got.version.unwrap();
    assert_eq!(version.cause, pb::VersionCause::Generated as i32);
    let content = got.content.unwrap();
    assert_eq!(content.key_judgements.len(), 6);
    assert!(!content.money.is_empty() && !content.disclaimer.is_empty());
    assert!(
        version.quality_checks.iter().all(|c| c.passed),
        "{:?}",
        version.quality_checks
    );
    assert_eq!(version.quality_checks.len(), 7);
    // The last event is published after the commit the status read saw:
    // wait (bounded) for it rather than race it.
    let mut events = stream_events(&redis, org, &id).await;
    for _ in 0..50 {
        if events.last().is_some_and(|e| e.contains("\"draft\"")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        events = stream_events(&redis, org, &id).await;
    }
    assert!(
        events.iter().filter(|e| e.contains("\"section\"")).count() >= 9,
        "{events:?}"
    );
    assert!(events.last().unwrap().contains("\"draft\""), "{events:?}");

    // Export is refused before approval.
    let refused = reports
        .export_report(authed(
            &analyst,
            pb::ExportReportRequest {
                id: id.clone(),
                format: pb::ExportFormat::Pdf.into(),
                pii_decisions: vec![],
            },
        ))
        .await
        .expect_err("not approved");
    assert_eq!(code_of(&refused), "FAILED_PRECONDITION");

    // An edit makes version 2 with the hash of its content and a diff.
    let updated = reports
        .update_section(authed(
            &analyst,
            edit(
                &id,
                "money",
                "Cash moves through money service businesses [m1].",
                1,
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let v2 = updated.version.unwrap();
    assert_eq!(v2.number, 2);
    assert_eq!(v2.author_id, "analyst-1");
    assert_eq!(v2.section, "money");
    assert_eq!(v2.content_hash.len(), 64);
    assert_ne!(v2.content_hash, version.content_hash);
    let stored = reports
        .get_report(authed(
            &analyst,
            pb::GetReportRequest {
                id: id.clone(),
                version: 2,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let domain = treven_kj::content_from_pb(stored.content.clone().unwrap());
    assert_eq!(domain.hash(), v2.content_hash, "hash of the stored content");
    assert_eq!(
        stored.content.unwrap().money,
        "Cash moves through money service businesses [m1]."
    );
    let diff = reports
        .diff_report_versions(authed(
            &analyst,
            pb::DiffReportVersionsRequest {
                id: id.clone(),
                from: 1,
                to: 2,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(diff.sections.len(), 10);
    for section in &diff.sections {
        let expected = if section.section == "money" {
            pb::SectionChange::Modified
        } else {
            pb::SectionChange::Unchanged
        };
        assert_eq!(section.change, expected as i32, "{}", section.section);
    }
    let money = diff.sections.iter().find(|s| s.section == "money").unwrap();
    assert!(
        money
            .ops
            .iter()
            .any(|op| op.kind == pb::DiffOpKind::Insert as i32 && op.text.contains("service"))
    );

    // PII in an edit blocks it; nothing is stored.
    let with_pii = "Contact the recruiter at a.popescu@example.com or 07700 900123 [m1].";
    let blocked = reports
        .update_section(authed(&analyst, edit(&id, "demand", with_pii, 2)))
        .await
        .expect_err("pii");
    assert_eq!(code_of(&blocked), "PII_DETECTED");
    let findings = pii_findings(&blocked);
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(
        findings
            .iter()
            .all(|f| f.section == "demand" && f.field_path == "demand")
    );
    let email = findings
        .iter()
        .find(|f| f.placeholder == "[EMAIL]")
        .unwrap();
    let phone = findings
        .iter()
        .find(|f| f.placeholder == "[PHONE]")
        .unwrap();
    assert_eq!(
        &with_pii[email.start as usize..email.end as usize],
        "a.popescu@example.com"
    );
    let latest = reports
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
    assert_eq!(latest.report.unwrap().latest_version, 2);

    // A keep without justification is refused precisely.
    let mut request = edit(&id, "demand", with_pii, 2);
    request.pii_decisions = vec![pb::PiiDecision {
        finding_id: email.id.clone(),
        action: pb::PiiAction::Keep.into(),
        justification: String::new(),
    }];
    let status = reports
        .update_section(authed(&analyst, request.clone()))
        .await
        .expect_err("no justification");
    assert_eq!(
        violated_fields(&status),
        vec!["pii_decisions[0].justification"]
    );

    // Redacting one and keeping the other with a justification unblocks it.
    request.pii_decisions = vec![
        pb::PiiDecision {
            finding_id: email.id.clone(),
            action: pb::PiiAction::Redact.into(),
            justification: String::new(),
        },
        pb::PiiDecision {
            finding_id: phone.id.clone(),
            action: pb::PiiAction::Keep.into(),
            justification: "the public helpline of a charity, not a person".into(),
        },
    ];
    let saved = reports
        .update_section(authed(&analyst, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        saved.content.unwrap().demand,
        "Contact the recruiter at [EMAIL] or 07700 900123 [m1]."
    );
    let v3 = saved.version.unwrap();
    assert_eq!(v3.pii_decisions.len(), 2);

    // Both decisions (and the block) are in the tenants audit log.
    let audit = stack.audit_actions(&analyst, &id).await;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"report.create"), "{actions:?}");
    assert!(actions.contains(&"report.generate"));
    assert!(actions.contains(&"report.pii_blocked"));
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "report.pii_decision")
            .count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "report.section.update")
            .count(),
        2
    );
    let keep = audit
        .iter()
        .find(|e| {
            e.action == "report.pii_decision"
                && treven_mesh::wire::struct_to_json(e.details.as_ref().unwrap())["action"]
                    == "keep"
        })
        .expect("keep audited");
    assert_eq!(keep.actor_id, "analyst-1");

    // Viewers read but cannot submit; the workflow then runs to export.
    let viewer = stack.token(org, "viewer-1", Role::Viewer);
    let denied = reports
        .submit_report(authed(
            &viewer,
            pb::SubmitReportRequest {
                id: id.clone(),
                version: 3,
                override_justification: String::new(),
            },
        ))
        .await
        .expect_err("viewer");
    assert_eq!(code_of(&denied), "FORBIDDEN");
    let illegal = reports
        .approve_report(authed(
            &analyst,
            pb::ApproveReportRequest {
                id: id.clone(),
                version: 3,
            },
        ))
        .await
        .expect_err("not in review");
    assert_eq!(code_of(&illegal), "FAILED_PRECONDITION");
    let stale = reports
        .submit_report(authed(
            &analyst,
            pb::SubmitReportRequest {
                id: id.clone(),
                version: 2,
                override_justification: String::new(),
            },
        ))
        .await
        .expect_err("stale");
    assert_eq!(code_of(&stale), "CONFLICT");
    // The short edits left too few words: a blocking check, which a second
    // admin overrides with a justification.
    let short = reports
        .submit_report(authed(
            &analyst,
            pb::SubmitReportRequest {
                id: id.clone(),
                version: 3,
                override_justification: String::new(),
            },
        ))
        .await
        .expect_err("too few words");
    assert_eq!(code_of(&short), "FAILED_PRECONDITION");
    let failed: Vec<i32> = failed_checks(&short).iter().map(|c| c.kind).collect();
    assert_eq!(failed, vec![pb::QualityCheckKind::WordCount as i32]);
    reports
        .submit_report(authed(
            &stack.token(org, "admin-2", Role::Admin),
            pb::SubmitReportRequest {
                id: id.clone(),
                version: 3,
                override_justification: "A short briefing agreed with the client.".into(),
            },
        ))
        .await
        .unwrap();
    let admin = stack.token(org, "admin-1", Role::Admin);
    let approved = reports
        .approve_report(authed(
            &admin,
            pb::ApproveReportRequest {
                id: id.clone(),
                version: 3,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(approved.status, pb::ReportStatus::Approved as i32);
    let approval = approved.approval.unwrap();
    assert_eq!(
        (approval.approved_by.as_str(), approval.version),
        ("admin-1", 3)
    );

    // Trends come from the approved key judgements.
    let trends = reports
        .list_trends(authed(
            &viewer,
            pb::ListTrendsRequest {
                country: "GB".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(trends.len(), 6);
    assert!(
        trends
            .iter()
            .all(|t| t.country == "GB" && t.report_version == 3 && !t.sources.is_empty())
    );
    assert!(
        trends
            .iter()
            .any(|t| t.confidence == pb::Confidence::High as i32)
    );
    assert!(!trends[0].statement.contains("[k"));

    // Export: PDF, DOCX and markdown, downloaded and parsed back. The kept
    // phone number does not block again.
    let http = reqwest_get();
    for format in [
        pb::ExportFormat::Pdf,
        pb::ExportFormat::Docx,
        pb::ExportFormat::Markdown,
    ] {
        let export = reports
            .export_report(authed(
                &analyst,
                pb::ExportReportRequest {
                    id: id.clone(),
                    format: format.into(),
                    pii_decisions: vec![],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(export.version, 3);
        assert!(export.expires_at.is_some());
        let bytes = http(&export.url);
        let text = match format {
            pb::ExportFormat::Pdf => pdf_text(&bytes),
            pb::ExportFormat::Docx => docx_text(&bytes),
            _ => String::from_utf8(bytes).unwrap(),
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            "LABOUR EXPLOITATION IN GB AGRICULTURE",
            "KEY JUDGEMENTS",
            "We assess as follows:",
            "Cash moves through money service businesses",
            "Contact the recruiter at [EMAIL]",
            "RED FLAG INDICATORS",
            "INFORMATION REQUIREMENTS",
        ] {
            assert!(text.contains(expected), "{format:?} lacks {expected:?}");
        }
    }
    let exported = reports
        .get_report(authed(
            &viewer,
            pb::GetReportRequest {
                id: id.clone(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(exported.status, pb::ReportStatus::Exported as i32);

    // Sharing goes through tenants: the partner must exist in the org.
    let unknown = reports
        .share_report(authed(
            &analyst,
            pb::ShareReportRequest {
                id: id.clone(),
                partner_id: uuid::Uuid::now_v7().to_string(),
                permission: tenants::ReportPermission::View.into(),
            },
        ))
        .await
        .expect_err("no partner");
    assert_eq!(code_of(&unknown), "NOT_FOUND");
    let partner = stack
        .tenants
        .clone()
        .create_partner(authed(
            &stack.retarget(&admin, Principal::Tenants),
            tenants::CreatePartnerRequest {
                name: "Bank".into(),
                kind: tenants::OrganisationKind::Fi.into(),
                contact_email: "fiu@bank.example".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .partner
        .unwrap();
    let access = reports
        .share_report(authed(
            &analyst,
            pb::ShareReportRequest {
                id: id.clone(),
                partner_id: partner.id.clone(),
                permission: tenants::ReportPermission::Download.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .access
        .unwrap();
    assert_eq!(access.report_id, id);
    stack.stop().await;
}

#[tokio::test]
async fn a_worker_killed_mid_job_does_not_lose_it_and_it_completes_once() {
    let stack = Stack::start(0).await;
    let org = stack.org("crash").await;
    let analyst = stack.token(org, "analyst-1", Role::Analyst);
    let id = create(&stack, &analyst, "RO", SECTOR_SLOW).await;

    let first = tokio::spawn(
        stack
            .app
            .worker()
            .run(treven_mesh::CancellationToken::new()),
    );
    // Wait until it has saved at least one section, then kill it.
    let pool = owner_pool(&stack).await;
    for _ in 0..200 {
        let saved: i64 = sqlx::query_scalar("SELECT count(*) FROM reports.report_job_sections")
            .fetch_one(&pool)
            .await
            .unwrap();
        if saved >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.abort();
    let _ = first.await;
    let saved_before: i64 = sqlx::query_scalar("SELECT count(*) FROM reports.report_job_sections")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        (2..9).contains(&saved_before),
        "killed mid-job: {saved_before}"
    );

    // Two more workers race for it once the lease lapses.
    let shutdown = treven_mesh::CancellationToken::new();
    for _ in 0..2 {
        tokio::spawn(stack.app.worker().run(shutdown.clone()));
    }
    let got = stack.wait_generated(&analyst, &id).await;
    assert_eq!(got.report.unwrap().status, pb::ReportStatus::Draft as i32);
    assert!(got.version.unwrap().quality_checks.iter().all(|c| c.passed));
    tokio::time::sleep(Duration::from_millis(800)).await;

    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM reports.report_versions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(versions, 1, "completed exactly once");
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state, attempts FROM reports.report_jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("succeeded", 2));
    // The second attempt asked only for the sections not yet saved.
    let calls = stack.agents.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].1.is_empty());
    assert_eq!(calls[1].1.len() as i64, 9 - saved_before);
    let generated = stack
        .audit_actions(&analyst, &id)
        .await
        .into_iter()
        .filter(|e| e.action == "report.generate")
        .count();
    assert_eq!(generated, 1);
    shutdown.cancel();
    pool.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn generation_retries_then_fails_the_report_with_a_reason() {
    let stack = Stack::start(1).await;
    let org = stack.org("failing").await;
    let analyst = stack.token(org, "analyst-1", Role::Analyst);
    let id = create(&stack, &analyst, "FR", SECTOR_FAIL).await;
    let got = stack.wait_generated(&analyst, &id).await;
    let report = got.report.unwrap();
    assert_eq!(report.status, pb::ReportStatus::Failed as i32);
    assert!(
        report.failure_reason.contains("model unavailable"),
        "{}",
        report.failure_reason
    );
    assert!(got.version.is_none());
    assert_eq!(stack.agents.calls.lock().unwrap().len(), 2, "max attempts");
    // A failed report cannot be edited.
    let refused = stack
        .reports
        .clone()
        .update_section(authed(&analyst, edit(&id, "money", "x [m1]", 0)))
        .await
        .expect_err("failed report");
    assert_eq!(code_of(&refused), "FAILED_PRECONDITION");
    stack.stop().await;
}

#[tokio::test]
async fn other_organisations_cannot_see_or_touch_a_report_and_bad_input_changes_nothing() {
    let stack = Stack::start(1).await;
    let a = stack.org("a").await;
    let b = stack.org("b").await;
    let analyst_a = stack.token(a, "analyst-a", Role::Analyst);
    let admin_b = stack.token(b, "admin-b", Role::Admin);
    let mut reports = stack.reports.clone();
    let id = create(&stack, &analyst_a, "GB", "construction").await;
    stack.wait_generated(&analyst_a, &id).await;

    // B: not found everywhere, and its list is empty.
    let listed = reports
        .list_reports(authed(&admin_b, pb::ListReportsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.is_empty());
    let calls: Vec<Result<(), tonic::Status>> = vec![
        reports
            .get_report(authed(
                &admin_b,
                pb::GetReportRequest {
                    id: id.clone(),
                    version: 0,
                },
            ))
            .await
            .map(|_| ()),
        reports
            .update_section(authed(&admin_b, edit(&id, "money", "Cash [m1].", 1)))
            .await
            .map(|_| ()),
        reports
            .submit_report(authed(
                &admin_b,
                pb::SubmitReportRequest {
                    id: id.clone(),
                    version: 1,
                    override_justification: String::new(),
                },
            ))
            .await
            .map(|_| ()),
        reports
            .approve_report(authed(
                &admin_b,
                pb::ApproveReportRequest {
                    id: id.clone(),
                    version: 1,
                },
            ))
            .await
            .map(|_| ()),
        reports
            .export_report(authed(
                &admin_b,
                pb::ExportReportRequest {
                    id: id.clone(),
                    format: 2,
                    pii_decisions: vec![],
                },
            ))
            .await
            .map(|_| ()),
        reports
            .diff_report_versions(authed(
                &admin_b,
                pb::DiffReportVersionsRequest {
                    id: id.clone(),
                    from: 1,
                    to: 2,
                },
            ))
            .await
            .map(|_| ()),
        reports
            .list_report_versions(authed(
                &admin_b,
                pb::ListReportVersionsRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        reports
            .reject_section(authed(
                &admin_b,
                pb::RejectSectionRequest {
                    id: id.clone(),
                    section: "money".into(),
                    reason: "r".into(),
                    base_version: 1,
                },
            ))
            .await
            .map(|_| ()),
    ];
    for (i, result) in calls.into_iter().enumerate() {
        let status = result.expect_err("cross-org");
        assert_eq!(status.code(), Code::NotFound, "call {i}: {status:?}");
    }
    // A's list filters by status and country.
    let drafts = reports
        .list_reports(authed(
            &analyst_a,
            pb::ListReportsRequest {
                status: pb::ReportStatus::Draft.into(),
                country: "gb".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drafts.items.len(), 1);
    let none = reports
        .list_reports(authed(
            &analyst_a,
            pb::ListReportsRequest {
                country: "FR".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(none.items.is_empty());

    // Bad input: precise errors.
    let cases: Vec<(pb::UpdateSectionRequest, &str, &str)> = vec![
        (
            {
                let mut r = edit(&id, "money", "Cash [m1].", 1);
                r.section = "conclusion".into();
                r
            },
            "VALIDATION_ERROR",
            "section",
        ),
        (
            {
                let mut r = edit(&id, "money", "Cash [m1].", 1);
                r.section = "disclaimer".into();
                r
            },
            "VALIDATION_ERROR",
            "section",
        ),
        (
            {
                let mut r = edit(&id, "money", "Cash [m1].", 1);
                r.reason = "  ".into();
                r
            },
            "VALIDATION_ERROR",
            "reason",
        ),
        (
            edit(&id, "money", &"word ".repeat(5000), 1),
            "VALIDATION_ERROR",
            "content.money",
        ),
        (
            edit(&id, "money", "Cash [m1].", 0),
            "CONFLICT",
            "base_version",
        ),
    ];
    for (request, code, field) in cases {
        let status = reports
            .update_section(authed(&analyst_a, request))
            .await
            .expect_err(field);
        assert_eq!(code_of(&status), code, "{field}: {status:?}");
        assert_eq!(
            violated_fields(&status),
            vec![field.to_owned()],
            "{status:?}"
        );
    }
    let rejected = reports
        .reject_section(authed(
            &analyst_a,
            pb::RejectSectionRequest {
                id: id.clone(),
                section: "money".into(),
                reason: String::new(),
                base_version: 1,
            },
        ))
        .await
        .expect_err("empty reason");
    assert_eq!(violated_fields(&rejected), vec!["reason"]);
    let illegal = reports
        .approve_report(authed(
            &analyst_a,
            pb::ApproveReportRequest {
                id: id.clone(),
                version: 1,
            },
        ))
        .await
        .expect_err("draft cannot be approved");
    assert_eq!(code_of(&illegal), "FAILED_PRECONDITION");
    let viewer = stack.token(a, "viewer-a", Role::Viewer);
    let forbidden = reports
        .update_section(authed(&viewer, edit(&id, "money", "Cash [m1].", 1)))
        .await
        .expect_err("viewer edit");
    assert_eq!(code_of(&forbidden), "FORBIDDEN");
    let bad_scope = reports
        .create_report(authed(
            &analyst_a,
            pb::CreateReportRequest {
                scope: Some(scope("GBR", "x")),
                document_ids: vec![],
            },
        ))
        .await
        .expect_err("bad country");
    assert_eq!(violated_fields(&bad_scope), vec!["scope.country"]);

    // Nothing stored changed.
    let versions = reports
        .list_report_versions(authed(
            &analyst_a,
            pb::ListReportVersionsRequest {
                id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.items.len(), 1);
    let report = reports
        .get_report(authed(
            &analyst_a,
            pb::GetReportRequest {
                id: id.clone(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(
        (report.status, report.latest_version),
        (pb::ReportStatus::Draft as i32, 1)
    );

    // Reject then regenerate a section.
    let r = reports
        .reject_section(authed(
            &analyst_a,
            pb::RejectSectionRequest {
                id: id.clone(),
                section: "money".into(),
                reason: "off topic".into(),
                base_version: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version.as_ref().unwrap().rejected_sections, vec!["money"]);
    assert!(r.content.unwrap().money.is_empty());
    let blocked = reports
        .submit_report(authed(
            &analyst_a,
            pb::SubmitReportRequest {
                id: id.clone(),
                version: 2,
                override_justification: String::new(),
            },
        ))
        .await
        .expect_err("rejected section");
    assert_eq!(code_of(&blocked), "FAILED_PRECONDITION");
    let regenerated = reports
        .regenerate_section(authed(
            &analyst_a,
            pb::RegenerateSectionRequest {
                id: id.clone(),
                section: "money".into(),
                reason: "needs the money section back".into(),
                base_version: 2,
                instructions: "name the contact payments went through".into(),
                pii_decisions: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let v3 = regenerated.version.unwrap();
    assert_eq!(
        (v3.number, v3.cause),
        (3, pb::VersionCause::Regenerated as i32)
    );
    assert!(v3.rejected_sections.is_empty());
    // The model's personal data was redacted automatically, never stored.
    let money = regenerated.content.unwrap().money;
    assert!(
        money.contains("[EMAIL]") && !money.contains("payroll@"),
        "{money}"
    );

    // An edit may leave its section empty: a new version whose quality
    // checks report the section missing (not a rejection).
    let emptied = reports
        .update_section(authed(&analyst_a, edit(&id, "money", "", 3)))
        .await
        .expect("an emptying edit is an edit")
        .into_inner();
    let v4 = emptied.version.unwrap();
    assert_eq!((v4.number, v4.cause), (4, pb::VersionCause::Edited as i32));
    assert!(v4.rejected_sections.is_empty());
    assert!(emptied.content.unwrap().money.is_empty());
    let order = v4
        .quality_checks
        .iter()
        .find(|c| c.kind == pb::QualityCheckKind::SectionOrder as i32)
        .expect("the section-order check");
    assert!(!order.passed && order.detail.contains("money"), "{order:?}");
    stack.stop().await;
}

fn redis_client(url: &str) -> String {
    url.to_owned()
}

/// The bodies of the events of report `id` in Redis, oldest first.
async fn stream_events(url: &str, org: treven_mesh::OrgId, id: &str) -> Vec<String> {
    let publisher = treven_mesh::events::EventPublisher::connect_lazy(url).unwrap();
    let channel = treven_mesh::events::EventChannel::Report(id.parse().unwrap());
    publisher
        .replay(org, &channel, treven_mesh::events::EventId::ZERO, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.data.to_string())
        .collect()
}

async fn owner_pool(stack: &Stack) -> sqlx::PgPool {
    sqlx::PgPool::connect(&stack.db.url).await.unwrap()
}

/// A blocking GET of a presigned URL (a tiny HTTP/1.1 client on a socket).
fn reqwest_get() -> impl Fn(&str) -> Vec<u8> {
    |url: &str| {
        use std::io::Write as _;
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) = rest.split_once('/').unwrap();
        let mut socket = std::net::TcpStream::connect(host).unwrap();
        write!(
            socket,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        socket.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body = response[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&body)
        } else {
            body
        }
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn pdf_text(bytes: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(bytes).expect("a PDF");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    assert!(pages.len() >= 3, "a 2,400-word report spans pages");
    doc.extract_text(&pages).expect("text")
}

fn docx_text(bytes: &[u8]) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .expect("document.xml")
        .read_to_string(&mut xml)
        .unwrap();
    // Text runs only, entities decoded.
    let mut text = String::new();
    for piece in xml.split("<w:t xml:space=\"preserve\">").skip(1) {
        let run = piece.split("</w:t>").next().unwrap();
        text.push_str(
            &run.replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'"),
        );
        text.push(' ');
    }
    text
}

#[tokio::test]
async fn every_rpc_answers_each_principal_and_role_as_its_table_says() {
    let stack = Stack::start(0).await;
    let org = stack.org("Walk").await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", stack.reports_address))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let calls =
        treven_testkit::policy::walk(&channel, &treven_reports::policy::POLICY, &stack.keys, org)
            .await;
    assert!(calls > 100, "walked {calls} calls");

    // A viewer cannot start a generation.
    let viewer = stack.token(org, "viv", Role::Viewer);
    let refused = stack
        .reports
        .clone()
        .create_report(authed(
            &viewer,
            pb::CreateReportRequest {
                scope: Some(scope("GBR", "agriculture")),
                document_ids: vec![],
            },
        ))
        .await
        .expect_err("viewers read only");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(stack.agents.calls.lock().unwrap().is_empty());
    stack.stop().await;
}

async fn search(
    stack: &Stack,
    token: &str,
    q: &str,
    limit: i32,
    cursor: &str,
) -> Result<pb::ListReportsResponse, tonic::Status> {
    stack
        .reports
        .clone()
        .list_reports(authed(
            token,
            pb::ListReportsRequest {
                q: q.into(),
                limit,
                cursor: cursor.into(),
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn ids(page: &pb::ListReportsResponse) -> Vec<String> {
    page.items.iter().map(|r| r.id.clone()).collect()
}

#[tokio::test]
async fn search_finds_reports_by_their_words_within_the_organisation_only() {
    let stack = Stack::start(1).await;
    let a = stack.org("search a").await;
    let b = stack.org("search b").await;
    let analyst_a = stack.token(a, "analyst-a", Role::Analyst);
    let analyst_b = stack.token(b, "analyst-b", Role::Analyst);
    let construction = create(&stack, &analyst_a, "GB", "construction").await;
    let hospitality = create(&stack, &analyst_a, "GB", "hospitality").await;
    let theirs = create(&stack, &analyst_b, "GB", "hospitality").await;
    for (token, id) in [
        (&analyst_a, &construction),
        (&analyst_a, &hospitality),
        (&analyst_b, &theirs),
    ] {
        stack.wait_generated(token, id).await;
    }

    // A word of the scope finds that report only, in its own organisation.
    let found = search(&stack, &analyst_a, "hospitality", 0, "")
        .await
        .unwrap();
    assert_eq!(ids(&found), vec![hospitality.clone()]);
    let found = search(&stack, &analyst_b, "hospitality", 0, "")
        .await
        .unwrap();
    assert_eq!(ids(&found), vec![theirs.clone()]);

    // A word of the content (stemmed: "debts" finds "debt") finds both of
    // A's reports and never B's, a page at a time.
    let first = search(&stack, &analyst_a, "debts", 1, "").await.unwrap();
    assert_eq!(first.items.len(), 1);
    assert!(!first.next_cursor.is_empty());
    let second = search(&stack, &analyst_a, "debts", 1, &first.next_cursor)
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.next_cursor.is_empty(), "two matches, two pages");
    let mut both = [ids(&first), ids(&second)].concat();
    both.sort();
    let mut expected = vec![construction.clone(), hospitality.clone()];
    expected.sort();
    assert_eq!(both, expected);

    // A cursor belongs to its query.
    let moved = search(&stack, &analyst_a, "licence", 1, &first.next_cursor)
        .await
        .expect_err("another query's cursor");
    assert_eq!(moved.code(), Code::InvalidArgument);

    // The other filters still apply.
    let exported = stack
        .reports
        .clone()
        .list_reports(authed(
            &analyst_a,
            pb::ListReportsRequest {
                q: "debt".into(),
                status: pb::ReportStatus::Exported.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(exported.items.is_empty());

    // An edit is searchable as soon as it is saved; the words it replaced
    // are not.
    assert!(
        search(&stack, &analyst_a, "hawala", 0, "")
            .await
            .unwrap()
            .items
            .is_empty()
    );
    stack
        .reports
        .clone()
        .update_section(authed(
            &analyst_a,
            edit(
                &construction,
                "money",
                "Cash moved through hawala brokers [m1].",
                1,
            ),
        ))
        .await
        .unwrap();
    let edited = search(&stack, &analyst_a, "Hawala", 0, "").await.unwrap();
    assert_eq!(ids(&edited), vec![construction.clone()]);

    // Bad queries are refused with the field named; none is a 500.
    for bad in ["x".repeat(201), "debt\u{0}".to_owned()] {
        let refused = search(&stack, &analyst_a, &bad, 0, "")
            .await
            .expect_err("bad query");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), vec!["q".to_owned()]);
    }
    // Query syntax never fails: stray operators and quotes are words.
    search(&stack, &analyst_a, "\"unclosed or - & | !", 0, "")
        .await
        .unwrap();
    stack.stop().await;
}
