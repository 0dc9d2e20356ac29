//! Chat end to end: the real Bedrock SDK against the Bedrock fake, Gemini
//! against its fake, the offline provider, DynamoDB on moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Models, OPUS, TestApp, authed, org};
use tonic::Code;
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::send_message_response::Event;
use treven_testkit::bedrock::{Script, StreamException, Usage};
use treven_testkit::gemini::GeminiScript;

fn events(reply: &[(std::time::Instant, pb::SendMessageResponse)]) -> Vec<&Event> {
    reply
        .iter()
        .map(|(_, e)| e.event.as_ref().unwrap())
        .collect()
}

fn text(reply: &[(std::time::Instant, pb::SendMessageResponse)]) -> String {
    events(reply)
        .iter()
        .filter_map(|e| match e {
            Event::TextDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect()
}

fn done(reply: &[(std::time::Instant, pb::SendMessageResponse)]) -> &pb::ReplyDone {
    match events(reply).last().unwrap() {
        Event::Done(done) => done,
        other => panic!("the reply ends with done, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tool_use_round_trip_through_the_real_sdk_completes_and_meters_usage() {
    let app = TestApp::spawn(Models::Fakes).await;
    let a = org();
    let source_id = app
        .add_source(a, "Modern Slavery Statistics", "https://www.gov.uk/msstats")
        .await;
    let conversation = app.conversation(a).await;
    app.bedrock().push(
        Script::text(["Let me search."])
            .then_tool_use(
                "tool-1",
                "search_sources",
                [r#"{"text": "#, r#""modern slavery"}"#],
            )
            .usage(Usage::new(100, 20).with_cache(50, 10)),
    );
    app.bedrock().push(
        Script::text(["Found ", "one source."]).usage(Usage::new(180, 12).with_cache(120, 0)),
    );

    let reply = app
        .chat(a, &conversation, "What do we know about farm labour?")
        .await;
    for (i, (_, event)) in reply.iter().enumerate() {
        assert_eq!(
            event.sequence,
            i as i64 + 1,
            "sequence numbers start at 1 and step by 1"
        );
    }
    assert_eq!(text(&reply), "Let me search.Found one source.");
    let tool_events: Vec<&pb::ToolCall> = events(&reply)
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolCall(call) => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(tool_events.len(), 2, "running then succeeded");
    assert_eq!(
        tool_events[0].status,
        i32::from(pb::ToolCallStatus::Running)
    );
    assert_eq!(
        tool_events[1].status,
        i32::from(pb::ToolCallStatus::Succeeded)
    );
    assert_eq!(tool_events[1].tool, i32::from(pb::AgentTool::SearchSources));
    assert_eq!(tool_events[1].summary, "found 1 source(s)");

    // What the SDK sent: system prompt with a cache point, tool specs, then
    // the tool result with the source found in the documents service.
    let requests = app.bedrock().requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].model_id, OPUS);
    assert!(requests[0].system_texts()[0].contains("research assistant"));
    assert!(
        requests[0].body["system"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| !b["cachePoint"].is_null())
    );
    let specs: Vec<String> = requests[0]
        .tool_specs()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        specs.contains(&"search_sources".to_owned()) && specs.contains(&"detect_pii".to_owned())
    );
    let results = requests[1].tool_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["toolUseId"], "tool-1");
    assert_eq!(results[0]["status"], "success");
    assert_eq!(
        results[0]["content"][0]["json"]["sources"][0]["source_id"],
        source_id.as_str()
    );
    assert_eq!(
        requests[1].messages()[1]["content"][1]["toolUse"]["input"]["text"],
        "modern slavery"
    );

    let done = done(&reply);
    let assistant = done.assistant_message.as_ref().unwrap();
    assert_eq!(assistant.model_id, OPUS);
    assert_eq!(assistant.content, "Let me search.Found one source.");
    assert_eq!(assistant.tool_calls.len(), 1);
    let usage = assistant.usage.as_ref().unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens
        ),
        (280, 32, 170, 10)
    );

    // Stored, newest first; usage summed for the organisation only.
    let messages = app.messages(a, &conversation).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].role, i32::from(pb::MessageRole::Assistant));
    assert_eq!(messages[1].content, "What do we know about farm labour?");
    let usage = app.usage(a).await;
    assert_eq!(usage.models.len(), 1);
    assert_eq!(usage.models[0].model_id, OPUS);
    assert_eq!(usage.models[0].calls, 2);
    let total = usage.total.unwrap();
    assert_eq!(
        (
            total.input_tokens,
            total.output_tokens,
            total.cache_read_tokens
        ),
        (280, 32, 170)
    );
    // 280×$5 + 32×$25 + 170×$0.50 + 10×$6.25 per million tokens.
    assert_eq!(
        total.cost.unwrap().nanos,
        280 * 5_000 + 32 * 25_000 + 170 * 500 + 10 * 6_250
    );
    let other = app.usage(org()).await;
    assert!(other.models.is_empty());
    assert_eq!(other.total.unwrap().input_tokens, 0);
}

#[tokio::test]
async fn throttling_before_the_first_token_retries_then_fails_over_to_the_secondary() {
    let app = TestApp::spawn(Models::Fakes).await;
    let a = org();
    let conversation = app.conversation(a).await;
    app.bedrock().push(Script::throttled("Too many requests"));
    app.bedrock().push(Script::throttled("Too many requests"));
    app.gemini()
        .push(GeminiScript::text(["Answer ", "from Gemini."]).usage(40, 6));

    let reply = app.chat(a, &conversation, "Summarise the risks.").await;
    assert_eq!(
        app.bedrock().requests().len(),
        2,
        "retried once on the primary"
    );
    assert_eq!(text(&reply), "Answer from Gemini.");
    let assistant = done(&reply).assistant_message.clone().unwrap();
    assert_eq!(assistant.model_id, "gemini-2.5-pro");
    let gemini = app.gemini().requests();
    assert_eq!(gemini.len(), 1);
    assert_eq!(
        gemini[0].authorization.as_deref(),
        Some("Bearer ya29.test-token")
    );
    assert!(gemini[0].path.starts_with("projects/treven-test/locations/europe-west2/publishers/google/models/gemini-2.5-pro:streamGenerateContent"));
    assert!(
        !gemini[0].body["tools"][0]["functionDeclarations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let usage = app.usage(a).await;
    assert_eq!(usage.models[0].model_id, "gemini-2.5-pro");
    assert_eq!(usage.models[0].usage.as_ref().unwrap().input_tokens, 40);
}

#[tokio::test]
async fn a_mid_stream_error_ends_with_an_error_event_and_no_switch() {
    let app = TestApp::spawn(Models::Fakes).await;
    let a = org();
    let conversation = app.conversation(a).await;
    app.bedrock()
        .push(Script::text(["Hel", "lo ", "world"]).fail_mid_stream(
            2,
            StreamException::ModelStreamError,
            "boom",
        ));

    let reply = app.chat(a, &conversation, "Hello?").await;
    assert_eq!(text(&reply), "Hello ");
    match events(&reply).last().unwrap() {
        Event::Error(error) => {
            assert_eq!(error.code, "UNAVAILABLE");
            assert!(
                !error.message.contains("boom"),
                "provider text stays in logs"
            );
        }
        other => panic!("ends with an error, got {other:?}"),
    }
    assert!(
        app.gemini().requests().is_empty(),
        "a started stream never switches"
    );
    // Only the analyst's message is stored.
    let messages = app.messages(a, &conversation).await;
    assert_eq!(messages.len(), 1);

    // The next message carries the unanswered one in the same user turn.
    app.bedrock().push(Script::text(["Hi."]));
    let reply = app.chat(a, &conversation, "Are you there?").await;
    assert_eq!(text(&reply), "Hi.");
    let sent = app.bedrock().last_request().unwrap().messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["content"][0]["text"], "Hello?");
    assert_eq!(sent[0]["content"][1]["text"], "Are you there?");
}

#[tokio::test]
async fn deltas_stream_as_they_arrive() {
    let app = TestApp::spawn(Models::Fakes).await;
    let a = org();
    let conversation = app.conversation(a).await;
    // Five sentences 300 ms apart. The PII redaction holds back the last
    // 96 bytes of a reply, so each sentence is longer than that: the
    // first is let out once the second has arrived.
    let sentence = "Seasonal farm work in the county relies on recruitment through agencies, several of them unlicensed. ";
    assert!(sentence.len() > treven_agents::redaction::STREAM_HOLDBACK_BYTES);
    app.bedrock().push(
        Script::text([sentence, sentence, sentence, sentence, sentence])
            .token_delay(Duration::from_millis(300)),
    );

    let reply = app.chat(a, &conversation, "Count slowly.").await;
    let deltas: Vec<std::time::Instant> = reply
        .iter()
        .filter(|(_, e)| matches!(e.event, Some(Event::TextDelta(_))))
        .map(|(t, _)| *t)
        .collect();
    assert!(deltas.len() >= 4, "{} deltas", deltas.len());
    assert_eq!(text(&reply), sentence.repeat(5));
    // Five deltas 300 ms apart: the first must arrive well before the last
    // (≥ 0.8 s earlier), i.e. it was not buffered until the end.
    let spread = deltas[4].duration_since(deltas[0]);
    assert!(
        spread >= Duration::from_millis(800),
        "first delta only {spread:?} before the last"
    );
    let end = reply.last().unwrap().0;
    assert!(end.duration_since(deltas[0]) >= Duration::from_millis(800));
}

/// The model is asked while the analyst's message is being stored (#18,
/// row 5). When the message cannot be stored, the caller gets the error and
/// the reply, however far the model got, is neither streamed nor stored.
#[tokio::test]
async fn a_message_that_cannot_be_stored_gets_an_error_and_no_reply() {
    let app = TestApp::spawn_with_store_faults(Models::Fakes, |target, body| {
        target == "DynamoDB_20120810.PutItem" && body.contains("\"MSG#")
    })
    .await;
    let a = org();
    let conversation = app.conversation(a).await;
    // A whole reply at once: without the wait for the stored message it
    // would be streamed and stored before the refused write returns.
    app.bedrock()
        .push(Script::text(["A reply ", "that must never be shown."]));
    let token = app.token(a);
    let refused = app
        .client()
        .await
        .send_message(authed(
            &token,
            pb::SendMessageRequest {
                conversation_id: conversation.clone(),
                content: "What changed in the 2024 figures?".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let faults = app.store_faults.as_ref().unwrap();
    assert_eq!(faults.refused(), 1, "the analyst's message, once");

    // Long enough for the fake's reply to have ended and been stored.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(faults.refused(), 1, "no reply was stored after the refusal");
    let stored = app.messages(a, &conversation).await;
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn offline_chat_searches_sources_and_answers_with_them() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    app.add_source(
        a,
        "Labour exploitation in agriculture",
        "https://www.gov.uk/agri",
    )
    .await;
    let conversation = app.conversation(a).await;
    let reply = app
        .chat(a, &conversation, "labour exploitation agriculture")
        .await;
    let answer = text(&reply);
    assert!(answer.contains("1 relevant source(s)"), "{answer}");
    assert!(
        answer.contains("Labour exploitation in agriculture"),
        "{answer}"
    );
    let assistant = done(&reply).assistant_message.clone().unwrap();
    assert_eq!(assistant.model_id, "offline-kj-1");
    // The conversation took its title from the first message and moved to the top.
    let listed = app
        .client()
        .await
        .list_conversations(authed(
            &app.token(a),
            pb::ListConversationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items[0].id, conversation);
    assert_eq!(listed.items[0].title, "labour exploitation agriculture");
}

#[tokio::test]
async fn bad_chat_input_gets_precise_errors() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let conversation = app.conversation(a).await;
    let mut client = app.client().await;
    let send = |content: String, conversation_id: String| {
        authed(
            &app.token(a),
            pb::SendMessageRequest {
                conversation_id,
                content,
                ..Default::default()
            },
        )
    };

    support::assert_code(
        client
            .send_message(send("   ".into(), conversation.clone()))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("content"),
    );
    support::assert_code(
        client
            .send_message(send("x".repeat(2_001), conversation.clone()))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("content"),
    );
    support::assert_code(
        client
            .send_message(send("hi".into(), uuid::Uuid::now_v7().to_string()))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    support::assert_code(
        client
            .send_message(send("hi".into(), "not-a-uuid".into()))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("conversation_id"),
    );
    support::assert_code(
        client
            .list_messages(authed(
                &app.token(a),
                pb::ListMessagesRequest {
                    conversation_id: conversation.clone(),
                    limit: 101,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("limit"),
    );
    support::assert_code(
        client
            .create_conversation(authed(
                &app.token(a),
                pb::CreateConversationRequest {
                    title: "t".repeat(201),
                    context: None,
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("title"),
    );
    support::assert_code(
        client
            .get_usage(authed(
                &app.token(a),
                pb::GetUsageRequest {
                    month: "2026-13".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("month"),
    );
    // A context without roles (the gateway's role lookup) reads nothing.
    let roleless = app.mint(
        treven_mesh::Principal::Gateway,
        treven_mesh::Principal::Agents,
        a,
        "user-1",
        &[],
    );
    support::assert_code(
        client
            .list_conversations(authed(&roleless, pb::ListConversationsRequest::default()))
            .await,
        Code::PermissionDenied,
        "FORBIDDEN",
        None,
    );
    // A viewer reads but cannot chat.
    let viewer = app.mint(
        treven_mesh::Principal::Gateway,
        treven_mesh::Principal::Agents,
        a,
        "viewer-1",
        &[treven_mesh::Role::Viewer],
    );
    support::assert_code(
        client
            .send_message(authed(
                &viewer,
                pb::SendMessageRequest {
                    conversation_id: conversation,
                    content: "hi".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
        "FORBIDDEN",
        None,
    );
}

#[tokio::test]
async fn replies_and_run_status_are_published_on_redis() {
    use treven_mesh::events::{EventChannel, EventId, EventKind, EventPublisher};
    let events = EventPublisher::connect_lazy("redis://127.0.0.1:6379").unwrap();
    let app = TestApp::spawn_with(
        Models::Offline,
        support::FakeReports::default(),
        Some(events.clone()),
    )
    .await;
    let a = org();
    let conversation = app.conversation(a).await;
    app.chat(a, &conversation, "labour exploitation").await;
    let channel = EventChannel::Conversation(conversation.parse().unwrap());
    // Events are published by a background task after the stream's own
    // events: wait for the last one.
    let mut published = Vec::new();
    for _ in 0..100 {
        published = events
            .replay(a, &channel, EventId::ZERO, 100)
            .await
            .unwrap();
        if published.last().is_some_and(|e| !e.data["done"].is_null()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(published.iter().any(|e| e.kind == EventKind::ChatTool));
    assert!(
        published
            .iter()
            .any(|e| e.kind == EventKind::ChatResponse && !e.data["textDelta"].is_null())
    );
    assert!(!published.last().unwrap().data["done"].is_null());
    // Nothing leaks to another organisation's channel of the same id.
    assert!(
        events
            .replay(org(), &channel, EventId::ZERO, 100)
            .await
            .unwrap()
            .is_empty()
    );

    let run = app
        .client()
        .await
        .run_agent(authed(
            &app.token(a),
            pb::RunAgentRequest {
                kind: pb::AgentKind::Pii.into(),
                input: Some(treven_mesh::wire::json_to_struct(
                    &serde_json::json!({"text": "x"}),
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
    let mut status = Vec::new();
    for _ in 0..100 {
        status = events
            .replay(
                a,
                &EventChannel::Run(run.id.parse().unwrap()),
                EventId::ZERO,
                10,
            )
            .await
            .unwrap();
        if status.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let statuses: Vec<&str> = status
        .iter()
        .map(|e| e.data["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["running", "completed"]);
}
