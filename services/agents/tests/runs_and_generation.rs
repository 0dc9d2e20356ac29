//! Agent runs, report generation, PII detection and isolation between
//! organisations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::StreamExt as _;
use support::{FakeReports, Models, TestApp, assert_code, authed, org};
use tonic::Code;
use treven_mesh::Principal;
use treven_mesh::wire::{json_to_struct, struct_to_json};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::generate_report_response::Event;
use treven_proto::treven::reports::v1 as reports;

fn scope() -> reports::ReportScope {
    reports::ReportScope {
        country: "GB".into(),
        sector: "agriculture".into(),
        exploitation_type: reports::ExploitationType::Labour.into(),
        ..Default::default()
    }
}

async fn generate(
    app: &TestApp,
    org: treven_mesh::OrgId,
    request: pb::GenerateReportRequest,
) -> Vec<pb::GenerateReportResponse> {
    let stream = app
        .client()
        .await
        .generate_report(authed(
            &app.via(Principal::Reports, &app.token(org)),
            request,
        ))
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.map(Result::unwrap).collect(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_offline_generator_streams_every_section_in_order_per_the_contract() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let mut sources = Vec::new();
    for i in 0..3 {
        sources.push(
            app.add_source(
                a,
                &format!("Modern slavery statistics part {i}"),
                &format!("https://www.gov.uk/ms/{i}"),
            )
            .await,
        );
    }
    let report_id = uuid::Uuid::now_v7().to_string();
    let events = generate(
        &app,
        a,
        pb::GenerateReportRequest {
            report_id,
            scope: Some(scope()),
            ..Default::default()
        },
    )
    .await;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.sequence, i as i64 + 1);
    }
    let sections: Vec<&pb::GeneratedSection> = events
        .iter()
        .filter_map(|e| match e.event.as_ref().unwrap() {
            Event::Section(s) => Some(s),
            _ => None,
        })
        .collect();
    let keys: Vec<&str> = sections.iter().map(|s| s.section.as_str()).collect();
    assert_eq!(
        keys,
        [
            "title_block",
            "key_judgements",
            "introduction",
            "recruitment",
            "demand",
            "money",
            "red_flag_indicators",
            "information_requirements",
            "headline_cards",
        ]
    );
    let mut ids = std::collections::HashSet::new();
    for section in &sections {
        let content = section.content.as_ref().unwrap();
        for citation in &content.citations {
            assert_eq!(citation.section, section.section);
            assert!(ids.insert(citation.id.clone()), "unique citation ids");
            assert!(sources.contains(&citation.source.as_ref().unwrap().source_id));
        }
        // Only the section's own field is set.
        let set = [
            content.title_block.is_some(),
            !content.key_judgements.is_empty(),
            !content.introduction.is_empty(),
            !content.recruitment.is_empty(),
            !content.demand.is_empty(),
            !content.money.is_empty(),
            !content.red_flag_indicators.is_empty(),
            !content.information_requirements.is_empty(),
            !content.headline_cards.is_empty(),
        ];
        assert_eq!(set.iter().filter(|s| **s).count(), 1, "{}", section.section);
        assert!(content.disclaimer.is_empty());
    }
    let title = sections[0]
        .content
        .as_ref()
        .unwrap()
        .title_block
        .as_ref()
        .unwrap();
    assert_eq!(title.title, "LABOUR EXPLOITATION IN AGRICULTURE: GB");
    assert_eq!(title.issue_number, 1);
    let Event::Done(done) = events.last().unwrap().event.as_ref().unwrap() else {
        panic!("ends with done")
    };
    let run = app.finished_run(a, &done.run_id).await;
    assert_eq!(run.status, i32::from(pb::RunStatus::Completed));
    assert_eq!(run.kind, i32::from(pb::AgentKind::Generator));
    assert_eq!(run.model_id, "offline-kj-1");
    assert!(done.usage.as_ref().unwrap().output_tokens > 2_000);
    assert!(run.duration.is_some());

    // Rewriting one section continues the citation ids of the current draft.
    let current = reports::ReportContent {
        citations: vec![reports::Citation {
            id: "c40".into(),
            section: "money".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let events = generate(
        &app,
        a,
        pb::GenerateReportRequest {
            report_id: uuid::Uuid::now_v7().to_string(),
            scope: Some(scope()),
            sections: vec!["demand".into()],
            current: Some(current),
            ..Default::default()
        },
    )
    .await;
    let section = events
        .iter()
        .find_map(|e| match e.event.as_ref().unwrap() {
            Event::Section(s) => Some(s),
            _ => None,
        })
        .expect("a section");
    assert_eq!(section.section, "demand");
    assert!(section.content.as_ref().unwrap().demand.contains("[c41]"));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.event, Some(Event::Section(_))))
            .count(),
        1
    );
}

#[tokio::test]
async fn bad_generation_and_run_input_gets_precise_errors() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let token = app.token(a);
    let mut client = app.client().await;
    let base = || pb::GenerateReportRequest {
        report_id: uuid::Uuid::now_v7().to_string(),
        scope: Some(scope()),
        ..Default::default()
    };
    assert_code(
        client
            .generate_report(authed(
                &app.via(Principal::Reports, &token),
                pb::GenerateReportRequest {
                    instructions: "x".repeat(2_001),
                    ..base()
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("instructions"),
    );
    assert_code(
        client
            .generate_report(authed(
                &app.via(Principal::Reports, &token),
                pb::GenerateReportRequest {
                    sections: vec!["epilogue".into()],
                    ..base()
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("sections"),
    );
    assert_code(
        client
            .generate_report(authed(
                &app.via(Principal::Reports, &token),
                pb::GenerateReportRequest {
                    sections: vec!["disclaimer".into()],
                    ..base()
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("sections"),
    );
    assert_code(
        client
            .generate_report(authed(
                &app.via(Principal::Reports, &token),
                pb::GenerateReportRequest {
                    scope: None,
                    ..base()
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("scope"),
    );

    let run = |kind: i32, input: serde_json::Value, model_id: &str| {
        authed(
            &token,
            pb::RunAgentRequest {
                kind,
                input: Some(json_to_struct(&input)),
                model_id: model_id.into(),
            },
        )
    };
    assert_code(
        client.run_agent(run(0, serde_json::json!({}), "")).await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("kind"),
    );
    assert_code(
        client.run_agent(run(99, serde_json::json!({}), "")).await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("kind"),
    );
    assert_code(
        client
            .run_agent(run(pb::AgentKind::Osint.into(), serde_json::json!({}), ""))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("input.scenario"),
    );
    assert_code(
        client
            .run_agent(run(
                pb::AgentKind::Summarise.into(),
                serde_json::json!({ "text": "y".repeat(20_001) }),
                "",
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("input"),
    );
    assert_code(
        client
            .run_agent(run(
                pb::AgentKind::Summarise.into(),
                serde_json::json!({ "text": "Summarise me." }),
                "gpt-4",
            ))
            .await,
        // A model this deployment does not route to names nothing here.
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    assert_code(
        client
            .get_run(authed(
                &token,
                pb::GetRunRequest {
                    id: uuid::Uuid::now_v7().to_string(),
                },
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    assert_code(
        client
            .get_run(authed(&token, pb::GetRunRequest { id: "nope".into() }))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("id"),
    );
}

#[tokio::test]
async fn agent_kinds_run_to_completion() {
    let a = org();
    let approved = uuid::Uuid::now_v7();
    let draft = uuid::Uuid::now_v7();
    let reports = FakeReports {
        approved: vec![(a, approved)],
        drafts: vec![(a, draft)],
    };
    let app = TestApp::spawn_with(Models::Offline, reports, None).await;
    let token = app.token(a);
    let mut client = app.client().await;
    let start = |kind: pb::AgentKind, input: serde_json::Value| {
        authed(
            &token,
            pb::RunAgentRequest {
                kind: kind.into(),
                input: Some(json_to_struct(&input)),
                model_id: String::new(),
            },
        )
    };

    let pii = client
        .run_agent(start(
            pb::AgentKind::Pii,
            serde_json::json!({ "text": "Write to a.popescu@example.com today." }),
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(pii.status, i32::from(pb::RunStatus::Running));
    let pii = app.finished_run(a, &pii.id).await;
    assert_eq!(
        pii.status,
        i32::from(pb::RunStatus::Completed),
        "{}",
        pii.error
    );
    let output = struct_to_json(pii.output.as_ref().unwrap());
    assert_eq!(output["findings"][0]["type"], "email");
    assert_eq!(output["findings"][0]["placeholder"], "[EMAIL]");
    assert_eq!(pii.tools_used, [i32::from(pb::AgentTool::DetectPii)]);

    let summary = client.run_agent(start(pb::AgentKind::Summarise, serde_json::json!({ "text": "Exploitation rose in 2025. Recruitment moved online. Money moved abroad." }))).await.unwrap().into_inner().run.unwrap();
    let summary = app.finished_run(a, &summary.id).await;
    assert_eq!(
        struct_to_json(summary.output.as_ref().unwrap())["summary"],
        "Exploitation rose in 2025. Recruitment moved online. Money moved abroad."
    );
    assert_eq!(summary.model_id, "offline-kj-1");

    // Social: approved content only.
    assert_code(
        client
            .run_agent(start(
                pb::AgentKind::Social,
                serde_json::json!({ "report_id": draft.to_string() }),
            ))
            .await,
        Code::FailedPrecondition,
        "FAILED_PRECONDITION",
        None,
    );
    assert_code(
        client
            .run_agent(start(
                pb::AgentKind::Social,
                serde_json::json!({ "report_id": uuid::Uuid::now_v7().to_string() }),
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    let social = client
        .run_agent(start(
            pb::AgentKind::Social,
            serde_json::json!({ "report_id": approved.to_string() }),
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let social = app.finished_run(a, &social.id).await;
    assert_eq!(social.status, i32::from(pb::RunStatus::Completed));
    assert!(
        struct_to_json(social.output.as_ref().unwrap())["post"]
            .as_str()
            .unwrap()
            .contains("agriculture")
    );

    let osint = client
        .run_agent(start(
            pb::AgentKind::Osint,
            serde_json::json!({ "scenario": "forced labour agriculture" }),
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let osint = app.finished_run(a, &osint.id).await;
    assert_eq!(
        osint.status,
        i32::from(pb::RunStatus::Completed),
        "{}",
        osint.error
    );
    assert_eq!(osint.tools_used, [i32::from(pb::AgentTool::SearchSources)]);
    assert!(osint.usage.as_ref().unwrap().input_tokens > 0);
}

#[tokio::test]
async fn detect_pii_returns_byte_ranges_and_placeholders() {
    let app = TestApp::spawn(Models::Offline).await;
    let text = "Call 07700 900123 or write to a.popescu@example.com.";
    let findings = app
        .client()
        .await
        .detect_pii(authed(
            &app.via(Principal::Reports, &app.token(org())),
            pb::DetectPiiRequest { text: text.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(findings.len(), 2);
    assert_eq!(
        &text[findings[0].start as usize..findings[0].end as usize],
        "07700 900123"
    );
    assert_eq!(findings[0].placeholder, "[PHONE]");
    assert_eq!(findings[1].r#type, i32::from(reports::PiiType::Email));
    assert!(findings[0].section.is_empty() && !findings[0].id.is_empty());
}

#[tokio::test]
async fn org_b_cannot_read_org_a_conversations_messages_runs_or_usage() {
    let app = TestApp::spawn(Models::Offline).await;
    let (a, b) = (org(), org());
    let conversation = app.conversation(a).await;
    app.chat(a, &conversation, "hello").await;
    let run = app
        .client()
        .await
        .run_agent(authed(
            &app.token(a),
            pb::RunAgentRequest {
                kind: pb::AgentKind::Pii.into(),
                input: Some(json_to_struct(
                    &serde_json::json!({ "text": "nothing here" }),
                )),
                model_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    app.finished_run(a, &run.id).await;
    assert!(!app.usage(a).await.models.is_empty());

    let token_b = app.token(b);
    let mut client = app.client().await;
    assert_code(
        client
            .list_messages(authed(
                &token_b,
                pb::ListMessagesRequest {
                    conversation_id: conversation.clone(),
                    limit: 1,
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    assert_code(
        client
            .send_message(authed(
                &token_b,
                pb::SendMessageRequest {
                    conversation_id: conversation.clone(),
                    content: "hi".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    assert_code(
        client
            .get_run(authed(&token_b, pb::GetRunRequest { id: run.id.clone() }))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    let listed = client
        .list_conversations(authed(&token_b, pb::ListConversationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.is_empty());
    let usage = app.usage(b).await;
    assert!(usage.models.is_empty());
    assert_eq!(usage.total.unwrap().output_tokens, 0);

    // A's cursor is refused for B.
    for _ in 0..2 {
        app.conversation(a).await;
    }
    let page = client
        .list_conversations(authed(
            &app.token(a),
            pb::ListConversationsRequest {
                limit: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_cursor.is_empty());
    assert_code(
        client
            .list_conversations(authed(
                &token_b,
                pb::ListConversationsRequest {
                    limit: 1,
                    cursor: page.next_cursor.clone(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("cursor"),
    );
    let second = client
        .list_conversations(authed(
            &app.token(a),
            pb::ListConversationsRequest {
                limit: 1,
                cursor: page.next_cursor,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.items.len(), 1);
    assert_ne!(second.items[0].id, page.items[0].id);
}

#[tokio::test]
async fn a_bedrock_written_section_is_parsed_renumbered_and_redacted() {
    let app = TestApp::spawn(Models::Fakes).await;
    let a = org();
    let source = app
        .add_source(a, "Recruitment online", "https://www.gov.uk/recruitment")
        .await;
    let answer = serde_json::json!({
        "text": "Recruitment moved online [r1]. Write to a.popescu@example.com for more [r9].",
        "citations": [{"id": "r1", "source_id": source, "claim": "recruitment moved online"}],
    })
    .to_string();
    let (head, tail) = answer.split_at(answer.len() / 2);
    app.bedrock().push(
        treven_testkit::bedrock::Script::text([head, tail])
            .usage(treven_testkit::bedrock::Usage::new(900, 120)),
    );
    let events = generate(
        &app,
        a,
        pb::GenerateReportRequest {
            report_id: uuid::Uuid::now_v7().to_string(),
            scope: Some(scope()),
            sections: vec!["recruitment".into()],
            ..Default::default()
        },
    )
    .await;
    let prompt = &app.bedrock().requests()[0].messages()[0]["content"][0]["text"];
    assert!(
        prompt.as_str().unwrap().contains(&source),
        "the prompt lists the sources"
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e.event.as_ref().unwrap() {
            Event::Section(_) => "section",
            Event::Usage(_) => "usage",
            Event::Done(_) => "done",
            Event::ToolCall(_) => "tool",
            Event::Error(_) => "error",
        })
        .collect();
    assert_eq!(kinds, ["usage", "section", "done"]);
    let Event::Section(section) = events[1].event.as_ref().unwrap() else {
        unreachable!()
    };
    let content = section.content.as_ref().unwrap();
    assert_eq!(
        content.recruitment,
        "Recruitment moved online [c1]. Write to [EMAIL] for more."
    );
    assert_eq!(content.citations.len(), 1);
    assert_eq!(content.citations[0].id, "c1");
    assert_eq!(
        content.citations[0].source.as_ref().unwrap().label,
        "Home Office, Recruitment online (2025)"
    );
    let Event::Done(done) = events[2].event.as_ref().unwrap() else {
        unreachable!()
    };
    assert_eq!(done.usage.as_ref().unwrap().input_tokens, 900);
    let run = app.finished_run(a, &done.run_id).await;
    assert_eq!(run.model_id, support::OPUS);
    assert_eq!(app.usage(a).await.models[0].calls, 1);
}

#[tokio::test]
async fn a_configured_guardrail_adds_its_pii_findings() {
    let fake = treven_testkit::bedrock::BedrockFake::start().await;
    let app = TestApp::spawn_full(Models::Offline, FakeReports::default(), None, Some(&fake)).await;
    let text = "Ask Fatima Hassan at a.popescu@example.com about it.";
    // The guardrail finds the bare name (no cue for the local rules) and the
    // e-mail the local detector finds too.
    fake.push(treven_testkit::bedrock::Script::guardrail_pii(&[
        ("NAME", "Fatima Hassan"),
        ("EMAIL", "a.popescu@example.com"),
        ("URL", "example.com"),
    ]));
    let findings = app
        .client()
        .await
        .detect_pii(authed(
            &app.via(Principal::Reports, &app.token(org())),
            pb::DetectPiiRequest { text: text.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .findings;
    let found: Vec<(&str, i32)> = findings
        .iter()
        .map(|f| (&text[f.start as usize..f.end as usize], f.r#type))
        .collect();
    assert_eq!(
        found,
        [
            ("Fatima Hassan", i32::from(reports::PiiType::Name)),
            ("a.popescu@example.com", i32::from(reports::PiiType::Email))
        ]
    );
    let request = fake.last_request().unwrap();
    assert_eq!(request.model_id, "gr-test:3");
    assert_eq!(request.body["content"][0]["text"]["text"], text);

    // Guardrail down: the local findings still come back.
    fake.push(treven_testkit::bedrock::Script::http_error(
        503,
        "ServiceUnavailableException",
        "down",
    ));
    let findings = app
        .client()
        .await
        .detect_pii(authed(
            &app.via(Principal::Reports, &app.token(org())),
            pb::DetectPiiRequest { text: text.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].placeholder, "[EMAIL]");
}

#[tokio::test]
async fn every_rpc_answers_each_principal_and_role_as_its_table_says() {
    let app = TestApp::spawn(Models::Offline).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let calls =
        treven_testkit::policy::walk(&channel, &treven_agents::policy::POLICY, &app.keys, org())
            .await;
    assert!(calls > 100, "walked {calls} calls");

    // Model spend only through the reports service: a user at the edge,
    // even an admin, cannot start a generation directly.
    let admin = app.mint(
        Principal::Gateway,
        Principal::Agents,
        org(),
        "admin-1",
        &[treven_mesh::Role::Admin],
    );
    let refused = app
        .client()
        .await
        .generate_report(authed(
            &admin,
            pb::GenerateReportRequest {
                report_id: uuid::Uuid::now_v7().to_string(),
                scope: Some(scope()),
                ..Default::default()
            },
        ))
        .await
        .expect_err("not from the edge");
    assert_eq!(refused.code(), Code::PermissionDenied);
}
