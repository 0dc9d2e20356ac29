//! The AgentCore Runtime contract: `/ping` and `/invocations` (SSE).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Models, TestApp, org};
use treven_mesh::Principal;

#[tokio::test]
async fn ping_and_invocations_follow_the_runtime_contract() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let conversation = app.conversation(a).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = treven_agents::runtime::router(
        app.agents.clone(),
        app.keys.verifier(Principal::AgentRuntime),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();

    let ping: serde_json::Value = http
        .get(format!("http://{address}/ping"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ping, serde_json::json!({"status": "Healthy"}));

    let body =
        serde_json::json!({"conversation_id": conversation, "message": "labour exploitation"});
    let refused = http
        .post(format!("http://{address}/invocations"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let forged = http
        .post(format!("http://{address}/invocations"))
        .header(
            "x-treven-context",
            treven_mesh::Signer::new(Principal::Gateway, treven_mesh::MeshKey::generate()).mint(
                Principal::AgentRuntime,
                a,
                "u",
                &[treven_mesh::Role::Analyst],
                "r",
                std::time::Duration::from_secs(60),
            ),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // A token for the agents service, a viewer, or a service principal: no.
    let invoke = |token: String| {
        http.post(format!("http://{address}/invocations"))
            .header("x-treven-context", token)
            .json(&body)
            .send()
    };
    assert_eq!(invoke(app.token(a)).await.unwrap().status(), 401);
    let viewer = app.mint(
        Principal::Gateway,
        Principal::AgentRuntime,
        a,
        "viewer-1",
        &[treven_mesh::Role::Viewer],
    );
    assert_eq!(invoke(viewer).await.unwrap().status(), 403);
    let from_reports = app.mint(
        Principal::Reports,
        Principal::AgentRuntime,
        a,
        "user-1",
        &[treven_mesh::Role::Analyst],
    );
    assert_eq!(invoke(from_reports).await.unwrap().status(), 403);

    let bad = http
        .post(format!("http://{address}/invocations"))
        .header("x-treven-context", app.token_to(Principal::AgentRuntime, a))
        .json(&serde_json::json!({"conversation_id": conversation, "message": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let other_org = http
        .post(format!("http://{address}/invocations"))
        .header(
            "x-treven-context",
            app.token_to(Principal::AgentRuntime, org()),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other_org.status(), 404);

    // Personal data: 422 with the findings, as through the gateway; then a
    // bad decision is a validation error.
    let pii = serde_json::json!({
        "conversation_id": conversation,
        "message": "Victim Jane Smith, jane.smith@example.org, phone 07700 900123",
    });
    let refused = http
        .post(format!("http://{address}/invocations"))
        .header("x-treven-context", app.token_to(Principal::AgentRuntime, a))
        .json(&pii)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "PII_DETECTED");
    let findings = refused["error"]["details"]["piiDetected"]["findings"]
        .as_array()
        .unwrap();
    let types: Vec<&str> = findings
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["name", "email", "phone"]);
    assert!(!refused.to_string().contains("jane.smith"));
    let mut undecidable = pii.clone();
    undecidable["pii_decisions"] =
        serde_json::json!([{"finding_id": findings[0]["id"], "action": "keep"}]);
    let bad_decision = http
        .post(format!("http://{address}/invocations"))
        .header("x-treven-context", app.token_to(Principal::AgentRuntime, a))
        .json(&undecidable)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_decision.status(), 400);

    let response = http
        .post(format!("http://{address}/invocations"))
        .header("x-treven-context", app.token_to(Principal::AgentRuntime, a))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(events.iter().any(|e| e["type"] == "tool"));
    assert!(events.iter().any(|e| e["type"] == "usage"));
    assert!(events.iter().any(|e| e["type"] == "text"));
    assert_eq!(events.last().unwrap()["type"], "done");
    assert_eq!(events.last().unwrap()["model_id"], "offline-kj-1");
}
