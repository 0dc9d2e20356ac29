//! Issue #14, chat end to end through the gateway only, the whole mesh as
//! separate processes (the chat model is the wire-compatible Bedrock fake):
//!
//! - a WebSocket chat message with personal data is refused with an `error`
//!   frame `PII_DETECTED` carrying the findings, and nothing is stored or
//!   sent to the model; sent again with `piiDecisions` it is answered;
//! - the reply, which holds an e-mail address and a phone number, never
//!   reaches another user (an admin following the conversation for
//!   oversight over the WebSocket) or the store unredacted;
//! - the admin's following is audited when the subscription starts and at
//!   each membership recheck of the connection, by the agents service;
//!   the decisions, the refusal and the redactions are audited too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::client::{Api, Socket};
use support::mesh::{Mesh, MeshOptions};
use treven_testkit::bedrock::{Operation, Script, Usage};

const MESSAGE: &str =
    "Victim Jane Smith, jane.smith@example.org, phone 07700 900123, asked about farm work.";
const REPLY: [&str; 4] = [
    "The caseworker for this file can be reached at ",
    "caseworker.lee@example.org or on 07700 ",
    "900456 during office hours; recruitment moved to closed messaging groups ",
    "in the last year, according to the sources we hold.",
];
const SECRETS: [&str; 7] = [
    "Jane Smith",
    "jane.smith",
    "900123",
    "caseworker.lee",
    "example.org",
    "07700",
    "900456",
];

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks {secret:?}: {text}");
    }
}

fn is_end(m: &Value) -> bool {
    m["type"] == "error" || m["data"].get("done").is_some()
}

/// The audit actions on conversation `id`, newest first, as `admin` reads them.
async fn audit_actions(admin: &Api, id: &str) -> Vec<String> {
    let audit = admin
        .ok(
            reqwest::Method::GET,
            &format!("/api/audit?resourceType=conversation&resourceId={id}&limit=100"),
            None,
        )
        .await;
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_with_personal_data_over_the_websocket_never_reaches_anyone_unredacted() {
    let mesh = Mesh::start_with(
        "chatpii",
        MeshOptions {
            // Membership (and oversight) is checked again every second.
            env: vec![("TREVEN_GATEWAY_WS_RECHECK_SECS", "1".to_owned())],
            ..MeshOptions::default()
        },
    )
    .await;
    let admin = mesh.sign_in("chatpii", "ngo", "admin@chatpii.test", "admin");
    let analyst = mesh.sign_in("chatpii", "ngo", "analyst@chatpii.test", "analyst");
    let api = Api::new(&mesh, &analyst);
    let admin_api = Api::new(&mesh, &admin);
    let conversation = api
        .ok(
            reqwest::Method::POST,
            "/api/conversations",
            Some(json!({"title": "Case notes", "context": {"country": "GB", "sector": "agriculture"}})),
        )
        .await;
    let id = conversation["id"].as_str().unwrap().to_owned();

    // The admin follows the analyst's conversation: oversight, audited.
    let mut oversight = Socket::connect(&mesh, &admin).await;
    oversight
        .send(json!({"type": "subscribe", "channel": format!("conversation:{id}")}))
        .await;
    let subscribed = oversight
        .next_matching(Duration::from_secs(20), |m| {
            m["type"] == "subscribed" || m["type"] == "error"
        })
        .await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let at_subscription = audit_actions(&admin_api, &id).await;
    assert!(
        at_subscription.contains(&"conversation.read_for_oversight".to_owned()),
        "{at_subscription:?}"
    );

    // Personal data without decisions: refused, with the findings.
    let mut socket = Socket::connect(&mesh, &analyst).await;
    socket
        .send(json!({"type": "chat", "conversationId": id, "content": MESSAGE}))
        .await;
    let refused = socket.until(Duration::from_secs(30), is_end).await;
    let error = refused.last().unwrap();
    assert_eq!(error["type"], "error", "{refused:#?}");
    assert_eq!(error["code"], "PII_DETECTED", "{error}");
    assert_eq!(error["conversationId"], id.as_str());
    let findings = error["details"]["piiDetected"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("findings in the error frame: {error}"))
        .clone();
    let types: Vec<&str> = findings.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(
        types,
        ["PII_TYPE_NAME", "PII_TYPE_EMAIL", "PII_TYPE_PHONE"],
        "{error}"
    );
    let stored = api
        .ok(
            reqwest::Method::GET,
            &format!("/api/conversations/{id}/messages"),
            None,
        )
        .await;
    assert_eq!(
        stored["items"].as_array().map(Vec::len),
        Some(0),
        "{stored}"
    );
    assert!(
        mesh.bedrock
            .requests_of(Operation::ConverseStream)
            .is_empty(),
        "nothing went to the model"
    );

    // A bad decision is refused clearly, before anything is sent.
    socket
        .send(
            json!({"type": "chat", "conversationId": id, "content": MESSAGE,
            "piiDecisions": [{"findingId": findings[0]["id"], "action": "SHRED"}]}),
        )
        .await;
    let bad = socket
        .next_matching(Duration::from_secs(10), |m| m["type"] == "error")
        .await;
    assert_eq!(bad["code"], "VALIDATION_ERROR", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("piiDecisions[0]"),
        "{bad}"
    );

    // Each finding redacted: the message goes, and the reply streams.
    mesh.bedrock
        .push(Script::text(REPLY).usage(Usage::new(60, 30)));
    let decisions: Vec<Value> = findings
        .iter()
        .map(|f| json!({"findingId": f["id"], "action": "PII_ACTION_REDACT"}))
        .collect();
    socket
        .send(json!({"type": "chat", "conversationId": id, "content": MESSAGE, "piiDecisions": decisions}))
        .await;
    let reply = socket.until(Duration::from_secs(60), is_end).await;
    let done = reply.last().unwrap();
    assert!(done["data"].get("done").is_some(), "{reply:#?}");
    let streamed: String = reply
        .iter()
        .filter_map(|m| m["data"]["textDelta"]["text"].as_str())
        .collect();
    assert!(
        streamed.contains("[EMAIL]") && streamed.contains("[PHONE]"),
        "{streamed}"
    );
    for frame in &reply {
        assert_clean("a frame to the analyst", &frame.to_string());
    }
    // The model was sent the redacted message only.
    let sent = mesh.bedrock.requests_of(Operation::ConverseStream);
    assert_eq!(sent.len(), 1);
    assert_clean("the model request", &sent[0].body.to_string());
    assert!(sent[0].body.to_string().contains("Victim [NAME]"));

    // The other user, following for oversight, saw it redacted too.
    let followed = oversight
        .until(Duration::from_secs(20), |m| m["data"].get("done").is_some())
        .await;
    let relayed: String = followed
        .iter()
        .filter_map(|m| m["data"]["textDelta"]["text"].as_str())
        .collect();
    assert_eq!(relayed, streamed, "the follower sees what the analyst sees");
    for frame in &followed {
        assert_clean("a frame to the admin", &frame.to_string());
    }

    // The store holds both messages redacted, as the admin reads them.
    let stored = admin_api
        .ok(
            reqwest::Method::GET,
            &format!("/api/conversations/{id}/messages"),
            None,
        )
        .await;
    let items = stored["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{stored}");
    assert_clean("the stored messages", &stored.to_string());
    assert_eq!(items[0]["content"].as_str().unwrap(), streamed);

    // Rechecks go on: each one records the oversight again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let actions = audit_actions(&admin_api, &id).await;
    let oversight_reads = actions
        .iter()
        .filter(|a| *a == "conversation.read_for_oversight")
        .count();
    let before = at_subscription
        .iter()
        .filter(|a| *a == "conversation.read_for_oversight")
        .count();
    // The subscription, the admin's own message reads above, and at least
    // two rechecks since.
    assert!(oversight_reads >= before + 3, "{actions:?}");
    for needed in [
        "conversation.pii_blocked",
        "conversation.pii_decision",
        "conversation.pii_redacted",
    ] {
        assert!(
            actions.iter().any(|a| a == needed),
            "no {needed}: {actions:?}"
        );
    }
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "conversation.pii_decision")
            .count(),
        3,
        "one per finding: {actions:?}"
    );
    mesh.stop().await;
}
