//! PII on every path of chat that stores, shows or sends text: the
//! analyst's message is refused (PII_DETECTED with its findings) until each
//! finding is decided, and nothing reaches the store or the model before;
//! decisions are audited in the real tenants service; replies, tool call
//! arguments and osint run outputs are redacted before they are streamed or
//! stored, and the redactions audited. DynamoDB on moto, the real Bedrock
//! SDK against the Bedrock fake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost::Message as _;
use serde_json::json;
use support::{Models, TestApp, assert_code, authed};
use tonic::{Code, Status};
use treven_mesh::wire::{json_to_struct, struct_to_json};
use treven_mesh::{OrgId, Role};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::send_message_response::Event;
use treven_proto::treven::reports::v1 as reports;
use treven_testkit::bedrock::Script;

const MESSAGE: &str = "Victim Jane Smith, jane.smith@example.org, phone 07700 900123";
const SECRETS: [&str; 5] = ["Jane Smith", "jane.smith", "example.org", "07700", "900123"];

fn assert_clean(text: &str, what: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks {secret:?}: {text}");
    }
}

/// The findings of a PII_DETECTED status.
fn findings_of(status: &Status) -> Vec<reports::PiiFinding> {
    let details = tonic_types::pb::Status::decode(status.details()).expect("status details");
    let detected = details
        .details
        .iter()
        .find(|any| any.type_url == "type.googleapis.com/treven.reports.v1.PiiDetected")
        .expect("a PiiDetected detail");
    reports::PiiDetected::decode(detected.value.as_slice())
        .unwrap()
        .findings
}

async fn send(
    app: &TestApp,
    token: &str,
    conversation: &str,
    content: &str,
    decisions: Vec<reports::PiiDecision>,
) -> Result<Vec<Event>, Status> {
    let mut stream = app
        .client()
        .await
        .send_message(authed(
            token,
            pb::SendMessageRequest {
                conversation_id: conversation.to_owned(),
                content: content.to_owned(),
                pii_decisions: decisions,
            },
        ))
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        events.push(event.event.unwrap());
    }
    Ok(events)
}

fn done(events: &[Event]) -> &pb::ReplyDone {
    match events.last() {
        Some(Event::Done(done)) => done,
        other => panic!("the reply ends with done, got {other:?}"),
    }
}

fn redact(finding: &reports::PiiFinding) -> reports::PiiDecision {
    reports::PiiDecision {
        finding_id: finding.id.clone(),
        action: reports::PiiAction::Redact.into(),
        justification: String::new(),
    }
}

async fn setup() -> (TestApp, OrgId, String, String) {
    let app = TestApp::spawn_with_tenants(Models::Fakes).await;
    let org = app.tenants().org().await;
    let admin = app.token_of(org, "admin-1", Role::Admin);
    let conversation = app.conversation(org).await;
    (app, org, admin, conversation)
}

#[tokio::test]
async fn a_message_with_personal_data_is_refused_until_each_finding_is_decided() {
    let (mut app, org, admin, conversation) = setup().await;
    let analyst = app.token(org);

    // Refused with the findings; nothing stored, nothing sent to a model.
    let refused = send(&app, &analyst, &conversation, MESSAGE, Vec::new())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (reason, _) = support::error_of(&refused);
    assert_eq!(reason, "PII_DETECTED");
    let findings = findings_of(&refused);
    let types: Vec<i32> = findings.iter().map(|f| f.r#type).collect();
    assert_eq!(
        types,
        [
            i32::from(reports::PiiType::Name),
            i32::from(reports::PiiType::Email),
            i32::from(reports::PiiType::Phone)
        ]
    );
    for f in &findings {
        assert_eq!(f.field_path, "content");
        assert_eq!(f.id.len(), 32);
        assert_clean(&format!("{f:?}"), "a finding");
    }
    assert_eq!(
        &MESSAGE[findings[1].start as usize..findings[1].end as usize],
        "jane.smith@example.org"
    );
    assert!(app.bedrock().requests().is_empty(), "the model saw nothing");
    assert!(app.messages(org, &conversation).await.is_empty());

    // Bad decisions: a keep without a justification, a stray id, one left out.
    let mut keep = redact(&findings[0]);
    keep.action = reports::PiiAction::Keep.into();
    keep.justification = "short".into();
    let mut decisions: Vec<_> = findings.iter().map(redact).collect();
    decisions[0] = keep;
    assert_code(
        send(&app, &analyst, &conversation, MESSAGE, decisions).await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("pii_decisions[0].justification"),
    );
    let mut stray: Vec<_> = findings.iter().map(redact).collect();
    stray.push(reports::PiiDecision {
        finding_id: "f".repeat(32),
        ..redact(&findings[0])
    });
    assert_code(
        send(&app, &analyst, &conversation, MESSAGE, stray).await,
        // Decisions answering another text's findings: a conflict with the
        // text sent, named on the stray decision.
        Code::FailedPrecondition,
        "FAILED_PRECONDITION",
        Some("pii_decisions[3].finding_id"),
    );
    let partial = send(
        &app,
        &analyst,
        &conversation,
        MESSAGE,
        findings[..2].iter().map(redact).collect(),
    )
    .await
    .unwrap_err();
    assert_eq!(findings_of(&partial), findings[2..].to_vec());
    assert!(app.bedrock().requests().is_empty());
    assert!(app.messages(org, &conversation).await.is_empty());

    // Every finding redacted: stored and sent redacted.
    app.bedrock().push(Script::text(["Noted, ", "thank you."]));
    let events = send(
        &app,
        &analyst,
        &conversation,
        MESSAGE,
        findings.iter().map(redact).collect(),
    )
    .await
    .unwrap();
    let redacted = "Victim [NAME], [EMAIL], phone [PHONE]";
    let user = done(&events).user_message.clone().unwrap();
    assert_eq!(user.content, redacted);
    let requests = app.bedrock().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].messages()[0]["content"][0]["text"], redacted);
    assert_clean(&requests[0].body.to_string(), "the model request");
    let messages = app.messages(org, &conversation).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].content, redacted);
    let conversations = app
        .client()
        .await
        .list_conversations(authed(&analyst, pb::ListConversationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(conversations[0].title, redacted);

    // Audited: the refusals, then one entry per decision, without the text.
    let entries = app
        .tenants()
        .audit(&admin, "conversation", &conversation)
        .await;
    let decided: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "conversation.pii_decision")
        .collect();
    assert_eq!(decided.len(), 3, "{entries:?}");
    for entry in &decided {
        assert_eq!(entry.actor_id, "user-1");
        assert_eq!(entry.org_id, org.to_string());
        let details = struct_to_json(entry.details.as_ref().unwrap());
        assert_eq!(details["action"], "redact");
        assert_eq!(details["message_id"], user.id.as_str());
        assert!(
            findings
                .iter()
                .any(|f| details["finding_id"] == f.id.as_str())
        );
    }
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "conversation.pii_blocked")
            .count(),
        2,
        "the two refusals for undecided findings"
    );
    for entry in &entries {
        assert_clean(&format!("{:?}", entry.details), "an audit entry");
    }
    app.stop_tenants().await;
}

#[tokio::test]
async fn a_reply_and_tool_arguments_with_personal_data_are_streamed_and_stored_redacted() {
    let (mut app, org, admin, conversation) = setup().await;
    let analyst = app.token(org);
    app.bedrock().push(
        Script::text(["I will look the caseworker up. "]).then_tool_use(
            "tool-1",
            "search_sources",
            [r#"{"text": "caseworker jane.smith@"#, r#"example.org"}"#],
        ),
    );
    // The address and the number are split over deltas.
    app.bedrock().push(Script::text([
        "The caseworker on the farm labour case can be reached at jane.",
        "smith@exam",
        "ple.org or on 07700 ",
        "900123 during office hours; the rest of this answer is about ",
        "seasonal agricultural work in Lincolnshire and the recruitment ",
        "practices reported by the Gangmasters and Labour Abuse Authority.",
    ]));

    let events = send(
        &app,
        &analyst,
        &conversation,
        "Who handles the farm labour case?",
        Vec::new(),
    )
    .await
    .unwrap();
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::TextDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() >= 3, "still streamed in pieces: {deltas:?}");
    for delta in &deltas {
        assert_clean(delta, "a text delta");
    }
    let streamed = deltas.concat();
    assert!(
        streamed.contains("reached at [EMAIL] or on [PHONE] during office hours"),
        "{streamed}"
    );
    assert!(streamed.starts_with("I will look the caseworker up. The caseworker"));
    for event in &events {
        if let Event::ToolCall(call) = event {
            let arguments = struct_to_json(call.arguments.as_ref().unwrap());
            assert_eq!(arguments["text"], "caseworker [EMAIL]", "{arguments}");
        }
    }

    let assistant = done(&events).assistant_message.clone().unwrap();
    assert_eq!(assistant.content, streamed, "stored as streamed");
    let messages = app.messages(org, &conversation).await;
    assert_eq!(messages[0].content, streamed);
    let call = &messages[0].tool_calls[0];
    assert_clean(&format!("{call:?}"), "the stored tool call");
    // The tool ran with, and the model was sent back, the redacted arguments.
    let requests = app.bedrock().requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].messages()[1]["content"][1]["toolUse"]["input"]["text"],
        "caseworker [EMAIL]"
    );

    // The redactions are audited with kinds and counts only.
    let entries = app
        .tenants()
        .audit(&admin, "conversation", &conversation)
        .await;
    let redacted: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "conversation.pii_redacted")
        .collect();
    assert_eq!(redacted.len(), 1, "{entries:?}");
    let details = struct_to_json(redacted[0].details.as_ref().unwrap());
    assert_eq!(details["redacted"], json!({"email": 2.0, "phone": 1.0}));
    assert_eq!(details["message_id"], assistant.id.as_str());
    assert_clean(&details.to_string(), "the audit entry");
    app.stop_tenants().await;
}

#[tokio::test]
async fn an_osint_run_output_is_stored_redacted_and_audited() {
    let (mut app, org, admin, _) = setup().await;
    let analyst = app.token(org);
    app.bedrock().push(Script::text([
        "Top source: the GLAA annual report. Contact jane.smith@example.org ",
        "or 07700 900123 for the dataset.",
    ]));
    let run = app
        .client()
        .await
        .run_agent(authed(
            &analyst,
            pb::RunAgentRequest {
                kind: pb::AgentKind::Osint.into(),
                input: Some(json_to_struct(
                    &json!({"scenario": "Seasonal farm labour exploitation in Lincolnshire"}),
                )),
                model_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let finished = app.finished_run(org, &run.id).await;
    assert_eq!(finished.status, i32::from(pb::RunStatus::Completed));
    let output = struct_to_json(finished.output.as_ref().unwrap());
    assert_eq!(
        output["text"],
        "Top source: the GLAA annual report. Contact [EMAIL] or [PHONE] for the dataset."
    );
    // The audit entries are written before the run is finished: one
    // decision per finding redacted from the output (as the reports service
    // audits a generated report's), and the counts.
    let entries = app.tenants().audit(&admin, "agent_run", &run.id).await;
    // The run's start and end are audited too (tests/run_audit.rs).
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| e.action.starts_with("agent_run.pii_"))
        .collect();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "agent_run.pii_redacted",
            "agent_run.pii_decision",
            "agent_run.pii_decision"
        ],
        "{entries:?}"
    );
    let mut decided: Vec<(String, String)> = entries[1..]
        .iter()
        .map(|e| {
            assert_eq!(e.actor_id, "user-1");
            let details = struct_to_json(e.details.as_ref().unwrap());
            assert_eq!(details["kind"], "osint");
            assert_eq!(details["action"], "redact");
            assert_eq!(details["automatic"], true);
            assert_eq!(details["field_path"], "text");
            assert_eq!(details["finding_id"].as_str().map(str::len), Some(32));
            assert_clean(&details.to_string(), "the decision entry");
            (
                details["type"].as_str().unwrap().to_owned(),
                details["finding_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    decided.sort();
    assert_eq!(decided[0].0, "email");
    assert_eq!(decided[1].0, "phone");
    assert_ne!(decided[0].1, decided[1].1);
    assert_eq!(entries[0].actor_id, "user-1");
    let details = struct_to_json(entries[0].details.as_ref().unwrap());
    assert_eq!(details["kind"], "osint");
    assert_eq!(details["redacted"], json!({"email": 1.0, "phone": 1.0}));
    assert_eq!(details["total"], 2.0);
    app.stop_tenants().await;
}

#[tokio::test]
async fn a_run_whose_output_decisions_cannot_be_audited_fails_and_stores_nothing() {
    let (mut app, org, _admin, _) = setup().await;
    let analyst = app.token(org);
    app.stop_tenants().await;
    app.bedrock().push(Script::text([
        "Top source: the GLAA annual report. Contact jane.smith@example.org for the dataset.",
    ]));
    let run = app
        .client()
        .await
        .run_agent(authed(
            &analyst,
            pb::RunAgentRequest {
                kind: pb::AgentKind::Osint.into(),
                input: Some(json_to_struct(
                    &json!({"scenario": "Seasonal farm labour exploitation in Lincolnshire"}),
                )),
                model_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let finished = app.finished_run(org, &run.id).await;
    assert_eq!(finished.status, i32::from(pb::RunStatus::Failed));
    assert!(finished.output.is_none(), "{finished:?}");
    assert!(finished.error.contains("audit log"), "{finished:?}");
    assert_clean(&format!("{finished:?}"), "the failed run");
}
