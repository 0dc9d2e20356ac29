//! The providers on the wire: Bedrock through the real SDK against the
//! Bedrock fake, Gemini against the Gemini fake; typed errors and stop
//! reasons.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::StreamExt as _;
use serde_json::json;
use treven_agents::provider::{
    Block, ErrorKind, ModelEvent, ModelRequest, Provider, ProviderError, Role, StopReason, Turn,
    Usage,
};
use treven_testkit::bedrock::{BedrockFake, Script, Usage as FakeUsage};
use treven_testkit::gemini::{GeminiFake, GeminiScript};

async fn collect(
    provider: &dyn Provider,
    request: ModelRequest,
) -> Vec<Result<ModelEvent, ProviderError>> {
    provider.stream(request).collect().await
}

fn request() -> ModelRequest {
    ModelRequest {
        system: "You are a test.".into(),
        turns: vec![Turn::user("Hello")],
        tools: vec![treven_agents::tools::spec(
            treven_agents::model::Tool::SearchSources,
        )],
        max_tokens: 512,
        ..ModelRequest::default()
    }
}

#[tokio::test]
async fn bedrock_errors_are_typed() {
    let fake = BedrockFake::start().await;
    let provider = support::bedrock_provider(&fake).await;
    let cases = [
        (Script::throttled("slow down"), ErrorKind::Throttled),
        (
            Script::http_error(503, "ServiceUnavailableException", "down"),
            ErrorKind::Unavailable,
        ),
        (
            Script::http_error(429, "ModelNotReadyException", "warming up"),
            ErrorKind::NotReady,
        ),
        (
            Script::http_error(400, "ValidationException", "bad"),
            ErrorKind::Invalid,
        ),
    ];
    for (script, kind) in cases {
        fake.push(script);
        let events = collect(&provider, request()).await;
        assert_eq!(events.len(), 1);
        let error = events[0].as_ref().unwrap_err();
        assert_eq!(error.kind, kind, "{error}");
        assert_eq!(error.retryable(), kind != ErrorKind::Invalid);
    }
}

#[tokio::test]
async fn bedrock_reports_stop_reasons_usage_and_sends_tool_results() {
    let fake = BedrockFake::start().await;
    let provider = support::bedrock_provider(&fake).await;
    fake.push(
        Script::text(["cut ", "off"])
            .stop_reason("max_tokens")
            .usage(FakeUsage::new(9, 2).with_cache(3, 4)),
    );
    let mut request = request();
    request.turns.push(Turn {
        role: Role::Assistant,
        blocks: vec![Block::ToolUse {
            id: "t1".into(),
            name: "search_sources".into(),
            input: json!({"text": "x"}),
        }],
    });
    request.turns.push(Turn {
        role: Role::User,
        blocks: vec![Block::ToolResult {
            id: "t1".into(),
            name: "search_sources".into(),
            content: json!({"error": "nope"}),
            is_error: true,
        }],
    });
    let events: Vec<ModelEvent> = collect(&provider, request)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events[0], ModelEvent::Text("cut ".into()));
    assert_eq!(
        events[2],
        ModelEvent::Usage(Usage {
            input_tokens: 9,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_write_tokens: 4
        })
    );
    assert_eq!(events[3], ModelEvent::Stop(StopReason::MaxTokens));
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.tool_results()[0]["status"], "error");
    assert_eq!(sent.body["inferenceConfig"]["maxTokens"], 512);
    assert!(
        sent.body["toolConfig"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| !t["cachePoint"].is_null())
    );
}

#[tokio::test]
async fn gemini_function_calling_round_trip() {
    let fake = GeminiFake::start().await;
    let provider = support::gemini_provider(&fake);
    fake.push(GeminiScript::function_call("search_sources", json!({"text": "farm"})).usage(12, 3));
    let events: Vec<ModelEvent> = collect(&provider, request())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events[0],
        ModelEvent::ToolUse {
            id: "gemini-call-1".into(),
            name: "search_sources".into(),
            input: json!({"text": "farm"})
        }
    );
    assert_eq!(
        events[1],
        ModelEvent::Usage(Usage {
            input_tokens: 12,
            output_tokens: 3,
            ..Usage::default()
        })
    );
    assert_eq!(events[2], ModelEvent::Stop(StopReason::ToolUse));
    let first = &fake.requests()[0];
    assert_eq!(
        first.body["systemInstruction"]["parts"][0]["text"],
        "You are a test."
    );
    assert_eq!(
        first.body["tools"][0]["functionDeclarations"][0]["name"],
        "search_sources"
    );

    fake.push(GeminiScript::text(["Found ", "it."]));
    let mut next = request();
    next.turns.push(Turn {
        role: Role::Assistant,
        blocks: vec![Block::ToolUse {
            id: "gemini-call-1".into(),
            name: "search_sources".into(),
            input: json!({"text": "farm"}),
        }],
    });
    next.turns.push(Turn {
        role: Role::User,
        blocks: vec![Block::ToolResult {
            id: "gemini-call-1".into(),
            name: "search_sources".into(),
            content: json!({"sources": []}),
            is_error: false,
        }],
    });
    let events: Vec<ModelEvent> = collect(&provider, next)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events[0], ModelEvent::Text("Found ".into()));
    assert_eq!(
        events.last().unwrap(),
        &ModelEvent::Stop(StopReason::EndTurn)
    );
    let second = &fake.requests()[1];
    assert_eq!(second.function_responses()[0]["name"], "search_sources");
    assert_eq!(second.body["contents"][1]["role"], "model");
}

#[tokio::test]
async fn gemini_errors_are_typed_before_and_during_the_stream() {
    let fake = GeminiFake::start().await;
    let provider = support::gemini_provider(&fake);
    fake.push(GeminiScript::http_error(429, "quota"));
    let events = collect(&provider, request()).await;
    assert_eq!(events[0].as_ref().unwrap_err().kind, ErrorKind::Throttled);
    fake.push(GeminiScript::http_error(400, "bad schema"));
    assert_eq!(
        collect(&provider, request()).await[0]
            .as_ref()
            .unwrap_err()
            .kind,
        ErrorKind::Invalid
    );
    fake.push(GeminiScript::text(["a", "b", "c"]).fail_after(1));
    let events = collect(&provider, request()).await;
    assert_eq!(events[0].as_ref().unwrap(), &ModelEvent::Text("a".into()));
    assert_eq!(events[1].as_ref().unwrap_err().kind, ErrorKind::Unavailable);
    assert_eq!(events.len(), 2);
}
