//! The Bedrock fake driven by the real `aws-sdk-bedrockruntime` client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{Credentials, Region};
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput as StreamResponse;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole, ConverseStreamOutput,
    Message, StopReason, SystemContentBlock, TokenUsage, Tool, ToolConfiguration, ToolInputSchema,
    ToolSpecification,
};
use aws_smithy_types::Document;
use treven_testkit::bedrock::{BedrockFake, Operation, Script, StreamException, Usage};

const MODEL: &str = "eu.anthropic.claude-opus-4-5-20251101-v1:0";

fn client(fake: &BedrockFake) -> Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::new("eu-west-2"))
        .endpoint_url(fake.endpoint())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    Client::from_conf(config)
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .unwrap()
}

fn search_tool() -> ToolConfiguration {
    let schema = Document::Object(HashMap::from([
        ("type".to_owned(), Document::String("object".to_owned())),
        (
            "properties".to_owned(),
            Document::Object(HashMap::from([(
                "query".to_owned(),
                Document::Object(HashMap::from([(
                    "type".to_owned(),
                    Document::String("string".to_owned()),
                )])),
            )])),
        ),
    ]));
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("search_sources")
                .description("Search the sources")
                .input_schema(ToolInputSchema::Json(schema))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap()
}

async fn stream(client: &Client, text: &str) -> StreamResponse {
    client
        .converse_stream()
        .model_id(MODEL)
        .system(SystemContentBlock::Text(
            "You are an OSINT analyst.".to_owned(),
        ))
        .messages(user(text))
        .tool_config(search_tool())
        .send()
        .await
        .expect("converse-stream accepted")
}

/// Everything a stream yielded until its end or its first error.
#[derive(Default)]
struct Collected {
    texts: Vec<String>,
    tool_starts: Vec<(String, String)>,
    tool_input: String,
    stop_reason: Option<StopReason>,
    usage: Option<TokenUsage>,
    error: Option<SdkError<ConverseStreamOutputError, aws_smithy_types::event_stream::RawMessage>>,
    text_times: Vec<Instant>,
}

async fn collect(mut response: StreamResponse) -> Collected {
    let mut out = Collected::default();
    loop {
        match response.stream.recv().await {
            Ok(Some(event)) => match event {
                ConverseStreamOutput::ContentBlockStart(start) => {
                    if let Some(ContentBlockStart::ToolUse(tool)) = start.start {
                        out.tool_starts.push((tool.tool_use_id, tool.name));
                    }
                }
                ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta {
                    Some(ContentBlockDelta::Text(text)) => {
                        out.texts.push(text);
                        out.text_times.push(Instant::now());
                    }
                    Some(ContentBlockDelta::ToolUse(tool)) => out.tool_input.push_str(&tool.input),
                    _ => {}
                },
                ConverseStreamOutput::MessageStop(stop) => out.stop_reason = Some(stop.stop_reason),
                ConverseStreamOutput::Metadata(meta) => out.usage = meta.usage,
                _ => {}
            },
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
}

#[tokio::test]
async fn text_stream_delivers_deltas_stop_reason_and_usage() {
    let fake = BedrockFake::start().await;
    fake.push(
        Script::text(["Hel", "lo, ", "world"])
            .stop_reason("end_turn")
            .usage(Usage::new(120, 7).with_cache(100, 20)),
    );
    let out = collect(stream(&client(&fake), "hi").await).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.texts, ["Hel", "lo, ", "world"]);
    assert_eq!(out.stop_reason, Some(StopReason::EndTurn));
    let usage = out.usage.expect("usage");
    assert_eq!(usage.input_tokens, 120);
    assert_eq!(usage.output_tokens, 7);
    assert_eq!(usage.total_tokens, 127);
    assert_eq!(usage.cache_read_input_tokens, Some(100));
    assert_eq!(usage.cache_write_input_tokens, Some(20));
    assert_eq!(fake.pending_scripts(), 0);
}

#[tokio::test]
async fn slow_tokens_arrive_as_they_are_sent() {
    let fake = BedrockFake::start().await;
    fake.push(Script::text(["a", "b", "c", "d"]).token_delay(Duration::from_millis(150)));
    let out = collect(stream(&client(&fake), "hi").await).await;
    assert_eq!(out.texts, ["a", "b", "c", "d"]);
    let spread = out.text_times[3] - out.text_times[0];
    assert!(spread >= Duration::from_millis(300), "{spread:?}");
}

#[tokio::test]
async fn tool_use_stream_yields_start_and_input_deltas() {
    let fake = BedrockFake::start().await;
    fake.push(Script::tool_use(
        "tooluse_1",
        "search_sources",
        [r#"{"que"#, r#"ry": "acme"#, r#" ltd"}"#],
    ));
    let out = collect(stream(&client(&fake), "find acme").await).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        out.tool_starts,
        [("tooluse_1".to_owned(), "search_sources".to_owned())]
    );
    let input: serde_json::Value = serde_json::from_str(&out.tool_input).unwrap();
    assert_eq!(input, serde_json::json!({"query": "acme ltd"}));
    assert_eq!(out.stop_reason, Some(StopReason::ToolUse));
}

#[tokio::test]
async fn http_429_is_a_throttling_exception() {
    let fake = BedrockFake::start().await;
    fake.push(Script::throttled("Too many requests, please wait."));
    let err = client(&fake)
        .converse_stream()
        .model_id(MODEL)
        .messages(user("hi"))
        .send()
        .await
        .expect_err("throttled");
    let err = err.into_service_error();
    assert!(err.is_throttling_exception(), "{err:?}");
    assert_eq!(
        aws_sdk_bedrockruntime::error::ProvideErrorMetadata::message(&err),
        Some("Too many requests, please wait.")
    );
}

#[tokio::test]
async fn mid_stream_exception_is_typed_after_first_deltas() {
    let fake = BedrockFake::start().await;
    fake.push(Script::text(["one", "two", "three"]).fail_mid_stream(
        2,
        StreamException::Throttling,
        "slow down",
    ));
    fake.push(Script::text(["x", "y"]).fail_mid_stream(
        1,
        StreamException::ModelStreamError,
        "model broke",
    ));
    let client = client(&fake);

    let out = collect(stream(&client, "hi").await).await;
    assert_eq!(out.texts, ["one", "two"]);
    assert!(out.stop_reason.is_none());
    let err = out.error.expect("stream error").into_service_error();
    assert!(err.is_throttling_exception(), "{err:?}");

    let out = collect(stream(&client, "hi").await).await;
    assert_eq!(out.texts, ["x"]);
    let err = out.error.expect("stream error").into_service_error();
    assert!(err.is_model_stream_error_exception(), "{err:?}");
}

#[tokio::test]
async fn requests_are_recorded_decoded() {
    let fake = BedrockFake::start().await;
    fake.push(Script::text(["ok"]));
    collect(stream(&client(&fake), "who owns acme?").await).await;

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.operation, Operation::ConverseStream);
    assert_eq!(request.model_id, MODEL);
    assert_eq!(request.system_texts(), ["You are an OSINT analyst."]);
    let messages = request.messages();
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"][0]["text"], "who owns acme?");
    let specs = request.tool_specs();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0]["name"], "search_sources");
    assert_eq!(
        specs[0]["inputSchema"]["json"]["properties"]["query"]["type"],
        "string"
    );
}

#[tokio::test]
async fn converse_returns_the_output_message() {
    let fake = BedrockFake::start().await;
    fake.push(
        Script::text(["Acme is ", "owned by X."])
            .then_tool_use("tooluse_2", "search_sources", [r#"{"query":"X"}"#])
            .usage(Usage::new(50, 9)),
    );
    let output = client(&fake)
        .converse()
        .model_id(MODEL)
        .messages(user("who owns acme?"))
        .send()
        .await
        .expect("converse");
    assert_eq!(output.stop_reason, StopReason::ToolUse);
    let message = output.output.expect("output").as_message().unwrap().clone();
    assert_eq!(message.role, ConversationRole::Assistant);
    assert_eq!(message.content[0].as_text().unwrap(), "Acme is owned by X.");
    let tool = message.content[1].as_tool_use().unwrap();
    assert_eq!(tool.tool_use_id, "tooluse_2");
    assert_eq!(tool.name, "search_sources");
    assert_eq!(output.usage.expect("usage").total_tokens, 59);
    let request = fake.last_request().unwrap();
    assert_eq!(request.operation, Operation::Converse);
    assert_eq!(request.model_id, MODEL);
}

#[tokio::test]
async fn tool_results_are_recorded() {
    use aws_sdk_bedrockruntime::types::{ToolResultBlock, ToolResultContentBlock, ToolUseBlock};
    let fake = BedrockFake::start().await;
    fake.push(Script::text(["done"]));
    let assistant = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id("tooluse_1")
                .name("search_sources")
                .input(Document::Object(HashMap::new()))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let result = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id("tooluse_1")
                .content(ToolResultContentBlock::Text("3 sources".to_owned()))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let response = client(&fake)
        .converse_stream()
        .model_id(MODEL)
        .messages(user("find"))
        .messages(assistant)
        .messages(result)
        .tool_config(search_tool())
        .send()
        .await
        .unwrap();
    collect(response).await;
    let results = fake.last_request().unwrap().tool_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["toolUseId"], "tooluse_1");
    assert_eq!(results[0]["content"][0]["text"], "3 sources");
}

#[tokio::test]
async fn no_script_queued_is_a_clear_error() {
    let fake = BedrockFake::start().await;
    let err = client(&fake)
        .converse()
        .model_id(MODEL)
        .messages(user("hi"))
        .send()
        .await
        .expect_err("nothing queued");
    assert!(
        format!("{:?}", err.into_service_error()).contains("no script queued"),
        "message names the problem"
    );
}
