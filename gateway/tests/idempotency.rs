//! Idempotency keys on REST writes, through the gateway to a real tenants
//! service with the keys in real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::Response;
use serde_json::{Value, json};
use support::Edge;
use treven_gateway::idempotency::{Idempotency, REPLAYED_HEADER, fingerprint};
use treven_mesh::Role;

fn partner(name: &str) -> Value {
    json!({"name": name, "kind": "ORGANISATION_KIND_NGO", "contactEmail": "desk@partner.example"})
}

async fn post(
    edge: &Edge,
    base: &str,
    token: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> Response {
    edge.http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn partners(edge: &Edge, token: &str) -> Vec<Value> {
    let list: Value = edge
        .http
        .get(edge.url("/api/partners"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

async fn redis() -> redis::aio::MultiplexedConnection {
    let url =
        std::env::var("TREVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_repeated_write_creates_once_and_answers_the_same() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let other = edge.org("Other").await;
    let (_, admin) = edge
        .member("ann@acme.example", acme, Some(Role::Admin))
        .await;
    let (_, stranger) = edge
        .member("oz@other.example", other, Some(Role::Admin))
        .await;
    let key = uuid::Uuid::new_v4().to_string();

    // The same request twice, the second through another gateway instance:
    // one partner, the same answer, the second marked as a replay.
    let first = post(
        &edge,
        &edge.base,
        &admin,
        &key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get(REPLAYED_HEADER).is_none());
    let first: Value = first.json().await.unwrap();
    let second_base = edge.another_gateway().await;
    let second = post(
        &edge,
        &second_base,
        &admin,
        &key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()[REPLAYED_HEADER], "true");
    assert_eq!(second.headers()["content-type"], "application/json");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second, "the stored answer, byte for byte");
    let listed = partners(&edge, &admin).await;
    assert_eq!(listed.len(), 1, "one partner created: {listed:?}");
    assert_eq!(listed[0]["id"], first["id"]);

    // The same key with another body: 409 IDEMPOTENCY_KEY_REUSED, nothing created.
    let reused = post(
        &edge,
        &edge.base,
        &admin,
        &key,
        "/api/partners",
        &partner("Refuge"),
    )
    .await;
    assert_eq!(reused.status(), 409);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(reused["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    assert!(
        reused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    // ... or another method and path.
    let id = first["id"].as_str().unwrap();
    let deleted = edge
        .http
        .delete(edge.url(&format!("/api/partners/{id}")))
        .bearer_auth(&admin)
        .header("idempotency-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 409);
    assert_eq!(partners(&edge, &admin).await.len(), 1);

    // Another organisation with the same key and body: its own partner.
    let theirs = post(
        &edge,
        &edge.base,
        &stranger,
        &key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(theirs.status(), 200);
    assert!(theirs.headers().get(REPLAYED_HEADER).is_none());
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], first["id"]);
    assert_eq!(partners(&edge, &stranger).await.len(), 1);

    // A deterministic client error is stored too: a replayed 409 CONFLICT
    // (the name is taken), not a second attempt.
    let taken_key = uuid::Uuid::new_v4().to_string();
    let taken = post(
        &edge,
        &edge.base,
        &admin,
        &taken_key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(taken.status(), 409);
    assert!(taken.headers().get(REPLAYED_HEADER).is_none());
    let again = post(
        &edge,
        &edge.base,
        &admin,
        &taken_key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()[REPLAYED_HEADER], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "CONFLICT"
    );

    // Concurrent repeats: one partner, every answer the first or "in progress".
    let key = uuid::Uuid::new_v4().to_string();
    let haven = partner("Haven");
    let racing: Vec<_> = (0..4)
        .map(|_| post(&edge, &edge.base, &admin, &key, "/api/partners", &haven))
        .collect();
    let mut ids = Vec::new();
    for answer in futures::future::join_all(racing).await {
        match answer.status().as_u16() {
            200 => ids.push(answer.json::<Value>().await.unwrap()["id"].clone()),
            409 => {
                assert_eq!(answer.headers()["retry-after"], "1");
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "CONFLICT");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("in progress")
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        !ids.is_empty() && ids.iter().all(|id| *id == ids[0]),
        "{ids:?}"
    );
    let names: Vec<Value> = partners(&edge, &admin)
        .await
        .into_iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Haven"), json!("Shelter")]);
    edge.stop().await;
}

#[tokio::test]
async fn bad_keys_in_progress_keys_and_other_users() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (ann, admin) = edge
        .member("ann@acme.example", acme, Some(Role::Admin))
        .await;
    let (_, bob) = edge
        .member("bob@acme.example", acme, Some(Role::Admin))
        .await;

    // Keys are 1–255 printable ASCII characters; else 400 naming the header.
    for bad in ["x".repeat(256), "tab\tkey".to_owned(), String::new()] {
        let answer = post(
            &edge,
            &edge.base,
            &admin,
            &bad,
            "/api/partners",
            &partner("Shelter"),
        )
        .await;
        assert_eq!(answer.status(), 400, "{bad:?}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["details"]["fields"][0]["field"],
            "Idempotency-Key"
        );
    }
    assert!(
        partners(&edge, &admin).await.is_empty(),
        "nothing was called"
    );

    // A key whose first request is still running: 409 "in progress".
    let key = "order-7";
    let body = partner("Shelter");
    let mut redis = redis().await;
    let print = fingerprint(
        &reqwest::Method::POST,
        "/api/partners",
        &ann,
        body.to_string().as_bytes(),
    );
    let pending = json!({"state": "pending", "fingerprint": print, "claim": "elsewhere"});
    let _: () = redis::cmd("SET")
        .arg(Idempotency::redis_key(acme, key))
        .arg(pending.to_string())
        .arg("EX")
        .arg(60)
        .query_async(&mut redis)
        .await
        .unwrap();
    let running = post(&edge, &edge.base, &admin, key, "/api/partners", &body).await;
    assert_eq!(running.status(), 409);
    assert_eq!(running.headers()["retry-after"], "1");
    let running: Value = running.json().await.unwrap();
    assert_eq!(running["error"]["code"], "CONFLICT");
    assert!(
        running["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );
    let _: () = redis::cmd("DEL")
        .arg(Idempotency::redis_key(acme, key))
        .query_async(&mut redis)
        .await
        .unwrap();

    // Another user of the organisation with the same key and request is
    // not handed the first user's answer.
    let first = post(&edge, &edge.base, &admin, key, "/api/partners", &body).await;
    assert_eq!(first.status(), 200);
    let by_bob = post(&edge, &edge.base, &bob, key, "/api/partners", &body).await;
    assert_eq!(by_bob.status(), 409);
    assert_eq!(
        by_bob.json::<Value>().await.unwrap()["error"]["code"],
        "IDEMPOTENCY_KEY_REUSED"
    );

    // GET ignores the header.
    let listed = edge
        .http
        .get(edge.url("/api/partners"))
        .bearer_auth(&admin)
        .header("idempotency-key", "x".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    edge.stop().await;
}

#[tokio::test]
async fn unavailable_and_rate_limited_answers_are_not_replayed() {
    let edge = Edge::start(60).await;
    let acme = edge.org("Acme").await;
    let (ann, admin) = edge
        .member("ann@acme.example", acme, Some(Role::Admin))
        .await;
    let mut redis = redis().await;

    // 503: documents is not running behind this instance. Not stored: the
    // retry calls again (no replay marker) and the key stays free.
    let dead = support::free_port();
    let base = edge
        .gateway_with(&[("TREVEN_DOCUMENTS_URL", format!("http://127.0.0.1:{dead}"))])
        .await;
    let key = uuid::Uuid::new_v4().to_string();
    let source = json!({"url": "https://example.org/a", "title": "A"});
    for _ in 0..2 {
        let answer = post(&edge, &base, &admin, &key, "/api/sources", &source).await;
        assert_eq!(answer.status(), 503);
        assert!(answer.headers().get(REPLAYED_HEADER).is_none());
    }
    let stored: Option<String> = redis::cmd("GET")
        .arg(Idempotency::redis_key(acme, &key))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stored, None, "no answer stored, no marker left");

    // 429: the user's bucket is empty. The retry once it refills (one call
    // a second) goes through and creates the partner.
    let key = uuid::Uuid::new_v4().to_string();
    let _: () = redis::Script::new(
        "local t = redis.call('TIME') redis.call('HSET', KEYS[1], 'tokens', 0, 'ts', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))",
    )
    .key(format!("treven:rl:user:{acme}:{ann}"))
    .invoke_async(&mut redis)
    .await
    .unwrap();
    let limited = post(
        &edge,
        &edge.base,
        &admin,
        &key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(limited.status(), 429);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let created = post(
        &edge,
        &edge.base,
        &admin,
        &key,
        "/api/partners",
        &partner("Shelter"),
    )
    .await;
    assert_eq!(created.status(), 200);
    assert!(created.headers().get(REPLAYED_HEADER).is_none());
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(partners(&edge, &admin).await.len(), 1);
    edge.stop().await;
}
