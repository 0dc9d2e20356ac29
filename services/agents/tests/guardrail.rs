//! Bedrock Guardrails as the second check on what reaches the model: every
//! Converse call carries the guardrail (`guardrailConfig`), and tool results,
//! which Converse's guardrail does not assess, go through `ApplyGuardrail`
//! before they are sent back: masked where the guardrail masks, withheld
//! where it blocks or cannot be reached. The real Bedrock SDK against the
//! Bedrock fake (one fake for the model, one standing in for the guardrail),
//! DynamoDB on moto, the real documents service for the tool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{FakeReports, Models, TestApp, org};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::send_message_response::Event;
use treven_testkit::bedrock::{BedrockFake, GuardrailPolicy, Operation, Script};

/// A bare name: no cue for the local detector's rules, so only the
/// guardrail can find it.
const NAME: &str = "Fatima Hassan";

/// An app whose guardrail is `guardrail`, with one source in `org` whose
/// title (and so summary) names [`NAME`], and a conversation; the model
/// asks for search_sources once, then answers.
async fn searching_app(guardrail: &BedrockFake) -> (TestApp, treven_mesh::OrgId, String) {
    let app =
        TestApp::spawn_full(Models::Fakes, FakeReports::default(), None, Some(guardrail)).await;
    let a = org();
    app.add_source(
        a,
        &format!("Interview with {NAME} on farm recruitment"),
        "https://www.gov.uk/interview",
    )
    .await;
    let conversation = app.conversation(a).await;
    app.bedrock().push(Script::tool_use(
        "tool-1",
        "search_sources",
        [r#"{"text": "farm recruitment"}"#],
    ));
    app.bedrock().push(Script::text(["One source found."]));
    (app, a, conversation)
}

/// The tool result the model was sent back, as JSON text.
fn tool_result_sent(app: &TestApp) -> (String, String) {
    let converse = app.bedrock().requests();
    assert_eq!(converse.len(), 2, "{converse:?}");
    let result = converse[1].tool_results()[0].clone();
    (
        result["content"].to_string(),
        result["status"].as_str().unwrap_or("success").to_owned(),
    )
}

#[tokio::test]
async fn a_tool_result_with_personal_data_is_masked_by_the_guardrail_before_the_model_sees_it() {
    assert!(
        treven_pii::detect(NAME).unwrap().is_empty(),
        "the test needs a name the local detector misses"
    );
    let guardrail = BedrockFake::start().await;
    guardrail.set_guardrail(Some(GuardrailPolicy::anonymize(&[("NAME", NAME)])));
    let (app, a, conversation) = searching_app(&guardrail).await;

    let reply = app
        .chat(a, &conversation, "What changed in farm recruitment?")
        .await;
    let done = reply
        .iter()
        .any(|(_, e)| matches!(e.event, Some(Event::Done(_))));
    assert!(done, "{reply:?}");

    // The guardrail was asked about the tool result, as model input.
    let applied = guardrail.requests_of(Operation::ApplyGuardrail);
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0].model_id, "gr-test:3");
    assert_eq!(applied[0].body["source"], "INPUT");
    let screened = applied[0].body["content"][0]["text"]["text"]
        .as_str()
        .unwrap();
    assert!(screened.contains(NAME), "{screened}");
    assert!(
        screened.contains("source_id"),
        "the whole result: {screened}"
    );

    // The model got the masked result, still JSON, and never the name.
    let (content, status) = tool_result_sent(&app);
    assert!(!content.contains(NAME), "{content}");
    assert!(
        content.contains("Interview with {NAME} on farm recruitment"),
        "{content}"
    );
    assert!(content.contains("gov.uk/interview"), "{content}");
    assert_eq!(status, "success");

    // Every Converse call carries the guardrail for prompts and answers.
    for request in app.bedrock().requests() {
        assert_eq!(
            request.body["guardrailConfig"]["guardrailIdentifier"], "gr-test",
            "{request:?}"
        );
        assert_eq!(request.body["guardrailConfig"]["guardrailVersion"], "3");
        assert_eq!(
            request.body["guardrailConfig"]["streamProcessingMode"],
            "sync"
        );
    }
}

#[tokio::test]
async fn a_tool_result_the_guardrail_blocks_or_cannot_check_is_withheld() {
    for (policy, reason) in [
        (GuardrailPolicy::block(&[("NAME", NAME)]), "blocked"),
        (GuardrailPolicy::unavailable(), "could not be checked"),
    ] {
        let guardrail = BedrockFake::start().await;
        guardrail.set_guardrail(Some(policy));
        let (app, a, conversation) = searching_app(&guardrail).await;
        let reply = app
            .chat(a, &conversation, "What changed in farm recruitment?")
            .await;
        assert!(
            reply
                .iter()
                .any(|(_, e)| matches!(e.event, Some(Event::Done(_)))),
            "the reply still completes: {reply:?}"
        );
        let (content, status) = tool_result_sent(&app);
        assert!(!content.contains(NAME), "{content}");
        assert!(
            !content.contains("gov.uk/interview"),
            "nothing of it: {content}"
        );
        assert!(content.contains(reason), "{content}");
        assert_eq!(status, "error");
        // The tool call itself ran and is reported as it was.
        let calls: Vec<&pb::ToolCall> = reply
            .iter()
            .filter_map(|(_, e)| match &e.event {
                Some(Event::ToolCall(call)) => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2, "{calls:?}");
    }
}

#[tokio::test]
async fn without_a_guardrail_converse_carries_none_and_nothing_is_applied() {
    let app = TestApp::spawn(Models::Fakes).await;
    let a = org();
    let conversation = app.conversation(a).await;
    app.bedrock().push(Script::text(["Hello."]));
    app.chat(a, &conversation, "Hello?").await;
    let requests = app.bedrock().requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].body.get("guardrailConfig").is_none(),
        "{:?}",
        requests[0]
    );
    assert!(
        app.bedrock()
            .requests_of(Operation::ApplyGuardrail)
            .is_empty()
    );
}
