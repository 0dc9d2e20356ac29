//! Resilience drills on the whole mesh, each bounded in time: break one
//! piece of infrastructure or one process, and check what users see.
//!
//! Postgres and Redis are private instances here (see `support::drill`), so
//! stopping them never disturbs the tests running beside these.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::client::{Api, Socket};
use support::drill::{PrivatePostgres, PrivateRedis};
use support::mesh::{Mesh, MeshOptions, User};

async fn get(mesh: &Mesh, user: &User, path: &str) -> (u16, Value) {
    Api::new(mesh, user).get(path).await
}

async fn post(mesh: &Mesh, user: &User, path: &str, body: Value) -> (u16, Value) {
    Api::new(mesh, user).post(path, body).await
}

/// Polls `path` until it answers 200, for at most `limit`.
async fn until_ok(mesh: &Mesh, user: &User, path: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = get(mesh, user, path).await;
        if status == 200 {
            return body;
        }
        assert!(
            started.elapsed() < limit,
            "{path} did not recover within {limit:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_and_the_services_recover_by_themselves() {
    let postgres = PrivatePostgres::start();
    let mesh = Mesh::start_with(
        "drill_pg",
        MeshOptions {
            database_url: Some(postgres.url()),
            ..MeshOptions::default()
        },
    )
    .await;
    let analyst = mesh.sign_in("pg-drill", "ngo", "analyst@pg.test", "analyst");
    assert_eq!(get(&mesh, &analyst, "/api/me").await.0, 200);
    assert_eq!(get(&mesh, &analyst, "/api/reports").await.0, 200);

    postgres.stop();
    // While it is down: a clear 503 (never a 500 or a hang); tenants is asked
    // for the role only when the gateway's cache has none, so ask reports.
    let (status, body) = get(&mesh, &analyst, "/api/reports").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");

    postgres.start_again();
    // Both Postgres-backed services come back without a restart.
    until_ok(&mesh, &analyst, "/api/reports", Duration::from_secs(30)).await;
    until_ok(&mesh, &analyst, "/api/me", Duration::from_secs(30)).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stops_rest_keeps_working_and_websocket_clients_are_told_then_recover() {
    let mut redis = PrivateRedis::start();
    let mesh = Mesh::start_with(
        "drill_redis",
        MeshOptions {
            redis_url: Some(redis.url()),
            ..MeshOptions::default()
        },
    )
    .await;
    let analyst = mesh.sign_in("redis-drill", "ngo", "analyst@redis.test", "analyst");
    let mut socket = Socket::connect(&mesh, &analyst).await;
    assert_eq!(get(&mesh, &analyst, "/api/me").await.0, 200);

    redis.stop();
    // Clients are told that live events stopped.
    let told = socket
        .next_matching(Duration::from_secs(20), |m| {
            m["type"] == "error" && m["code"] == "UNAVAILABLE"
        })
        .await;
    assert!(
        told["message"].as_str().unwrap().contains("interrupted"),
        "{told}"
    );
    // REST keeps working: rate limits fail open, nothing else needs Redis.
    for _ in 0..5 {
        let (status, body) = get(&mesh, &analyst, "/api/me").await;
        assert_eq!(status, 200, "{body}");
    }

    redis.start_again();
    // Events flow again: a new report's progress arrives over the socket.
    let report_id = loop {
        let (status, body) = post(&mesh, &analyst, "/api/reports", report_request()).await;
        if status == 200 {
            break body["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    socket.send(json!({"type": "subscribe", "channel": format!("report:{report_id}"), "lastEventId": "0-0"})).await;
    socket
        .next_matching(Duration::from_secs(60), |m| m["type"] == "report:update")
        .await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_to_a_gateway_under_load_fails_no_request_in_flight() {
    let mesh = Mesh::start_with(
        "drill_sigterm",
        MeshOptions {
            // Load balancers stop sending new connections within this delay;
            // requests keep being served during it, then in-flight ones finish.
            env: vec![
                ("TREVEN_DRAIN_DELAY_SECS", "3".to_owned()),
                ("TREVEN_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
                ("TREVEN_ORG_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;
    let analyst = mesh.sign_in("sigterm-drill", "ngo", "analyst@sigterm.test", "analyst");
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (url, token, stop) = (
            format!("{}/api/reports", mesh.gateway),
            analyst.token.clone(),
            stop.clone(),
        );
        workers.spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(response) if response.status() == 200 => match response.bytes().await {
                        Ok(_) => ok += 1,
                        Err(err) => failed.push(format!("body cut: {err}")),
                    },
                    Ok(response) => failed.push(format!("status {}", response.status())),
                    Err(err) => failed.push(format!("request: {err}")),
                }
            }
            (ok, failed)
        });
    }
    // A long reply that is still streaming when the gateway stops accepting
    // (SIGTERM + the 3 s drain delay): 8 tokens, 600 ms apart.
    let (status, conversation) = post(
        &mesh,
        &analyst,
        "/api/conversations",
        json!({"title": "drill"}),
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    mesh.bedrock.push(
        treven_testkit::bedrock::Script::text(["a ", "b ", "c ", "d ", "e ", "f ", "g ", "h"])
            .token_delay(Duration::from_millis(600)),
    );
    let reply = {
        let url = format!(
            "{}/api/conversations/{}/messages",
            mesh.gateway,
            conversation["id"].as_str().unwrap()
        );
        let token = analyst.token.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"content": "a long answer, please"}))
                .send()
                .await?;
            response.text().await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    mesh.gateway_server().terminate();
    // Keep the load up through most of the drain delay, as clients behind a
    // load balancer would until it deregisters the task.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let reply = reply.await.unwrap().expect("the streamed reply is not cut");
    assert!(
        reply.contains("\"done\""),
        "the reply in flight at shutdown completes: {reply}"
    );
    // The reply's deltas may be merged (the PII redactor holds text back
    // until a safe boundary), so look for the last token in the text.
    assert!(reply.contains("g h"), "{reply}");
    let (mut ok, mut failed) = (0, Vec::new());
    while let Some(joined) = workers.join_next().await {
        let (worker_ok, worker_failed) = joined.unwrap();
        ok += worker_ok;
        failed.extend(worker_failed);
    }
    assert!(ok > 50, "the load ran: {ok} requests");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reports_worker_killed_mid_generation_leaves_a_report_that_completes_once() {
    let mesh = Mesh::start_with(
        "drill_worker",
        MeshOptions {
            without_reports: true,
            env: vec![
                // Each section takes the offline model 400 ms: a generation
                // lasts about 4 s, long enough to kill its worker midway.
                ("TREVEN_OFFLINE_LATENCY_MS", "400".to_owned()),
                ("TREVEN_REPORTS_HEARTBEAT_MILLIS", "300".to_owned()),
                ("TREVEN_REPORTS_LEASE_MILLIS", "1500".to_owned()),
                ("TREVEN_REPORTS_POLL_MILLIS", "200".to_owned()),
                ("TREVEN_REPORTS_BACKOFF_MILLIS", "200".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;
    let mut first = mesh.start_reports(&[]);
    let analyst = mesh.sign_in("worker-drill", "ngo", "analyst@worker.test", "analyst");
    let admin = mesh.sign_in("worker-drill", "ngo", "admin@worker.test", "admin");
    let (status, report) = post(&mesh, &analyst, "/api/reports", report_request()).await;
    assert_eq!(status, 200, "{report}");
    let report_id = report["id"].as_str().unwrap().to_owned();
    let mut socket = Socket::connect(&mesh, &analyst).await;
    let channel = format!("report:{report_id}");
    socket
        .send(json!({"type": "subscribe", "channel": channel, "lastEventId": "0-0"}))
        .await;
    let midway = socket
        .next_matching(Duration::from_secs(30), |m| {
            m["data"]["sections_done"]
                .as_u64()
                .is_some_and(|done| done >= 2)
        })
        .await;

    // kill -9: no chance to hand the job back.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let (status, during) = get(&mesh, &analyst, &format!("/api/reports/{report_id}")).await;
    assert_eq!(status, 503, "no reports instance is up: {during}");

    let _second = mesh.start_reports(&[]);
    socket
        .next_matching(Duration::from_secs(60), |m| m["data"]["status"] == "draft")
        .await;
    let (_, got) = get(&mesh, &analyst, &format!("/api/reports/{report_id}")).await;
    assert_eq!(got["report"]["status"], "REPORT_STATUS_DRAFT", "{got}");
    let (_, versions) = get(
        &mesh,
        &analyst,
        &format!("/api/reports/{report_id}/versions"),
    )
    .await;
    assert_eq!(
        versions["items"].as_array().unwrap().len(),
        1,
        "exactly one generated version: {versions}"
    );
    // Audit entries follow the commit through reports' outbox: wait for it,
    // then for any duplicate a second delivery would make.
    let generate_entries = || async {
        let (_, audit) = get(
            &mesh,
            &admin,
            &format!("/api/audit?resourceType=report&resourceId={report_id}&limit=100"),
        )
        .await;
        let generated = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "report.generate")
            .count();
        (generated, audit)
    };
    let started = Instant::now();
    while generate_entries().await.0 == 0 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (generated, audit) = generate_entries().await;
    assert_eq!(generated, 1, "generated once: {audit}");
    assert!(
        midway["data"]["sections_done"].as_u64().unwrap() < 9,
        "killed midway: {midway}"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_tenants_instances_dies_and_calls_keep_succeeding() {
    let mut mesh = Mesh::start_with(
        "drill_tenants",
        MeshOptions {
            second_tenants: true,
            env: vec![
                ("TREVEN_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
                ("TREVEN_ORG_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;
    let analyst = mesh.sign_in("tenants-drill", "ngo", "analyst@tenants.test", "analyst");
    let admin = mesh.sign_in("tenants-drill", "ngo", "admin@tenants.test", "admin");
    let stop = Arc::new(AtomicBool::new(false));
    // Successful calls so far: the drill waits for load on both sides of the
    // kill by counting calls, not by sleeping, so a slow machine only makes
    // it longer, never weaker.
    let succeeded = Arc::new(AtomicU32::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (gateway, stop, succeeded) = (mesh.gateway.clone(), stop.clone(), succeeded.clone());
        // Six readers of /api/me (tenants GetMe) and two writers of partners.
        let (user, writes) = if worker < 6 {
            (analyst.clone(), false)
        } else {
            (admin.clone(), true)
        };
        workers.spawn(async move {
            let client = reqwest::Client::new();
            let (mut failed, mut n) = (Vec::new(), 0);
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let request = if writes {
                    client.post(format!("{gateway}/api/partners")).json(&json!({
                        "name": format!("partner {worker}-{n}"),
                        "kind": "ORGANISATION_KIND_FI",
                        "contactEmail": "fiu@bank.test",
                    }))
                } else {
                    client.get(format!("{gateway}/api/me"))
                };
                match request.bearer_auth(&user.token).send().await {
                    Ok(response) if response.status().is_success() => {
                        succeeded.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        failed.push((writes, status.as_u16(), body));
                    }
                    Err(err) => failed.push((writes, 0, err.to_string())),
                }
            }
            failed
        });
    }
    let at_least = |calls: u32| {
        let succeeded = succeeded.clone();
        async move {
            let started = std::time::Instant::now();
            while succeeded.load(Ordering::SeqCst) < calls {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the load stalled at {} calls",
                    succeeded.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    at_least(40).await;
    // kill -9 the first instance; the second one carries on alone.
    let first = mesh.tenants_server();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed_at = succeeded.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    at_least(killed_at + 40).await;
    stop.store(true, Ordering::SeqCst);
    let mut failed = Vec::new();
    while let Some(joined) = workers.join_next().await {
        failed.extend(joined.unwrap());
    }
    // Reads never fail: a read in flight on the dead instance is retried on
    // the live one. A write in flight there may or may not have happened, so
    // it is not retried: it gets a clear 503 (at most one per writer, at the
    // moment of the kill); every later write succeeds.
    let (writes, reads): (Vec<_>, Vec<_>) = failed.iter().partition(|(writes, _, _)| *writes);
    assert!(reads.is_empty(), "reads failed: {reads:?}");
    assert!(
        writes.len() <= 2,
        "writes failed beyond the ones in flight: {writes:?}"
    );
    for (_, status, body) in &writes {
        assert_eq!(*status, 503, "an interrupted write is UNAVAILABLE: {body}");
    }
    mesh.stop().await;
}

fn report_request() -> Value {
    json!({
        "scope": {
            "country": "GB",
            "sector": "construction",
            "exploitationType": "EXPLOITATION_TYPE_LABOUR",
            "clientType": "ORGANISATION_KIND_NGO",
        }
    })
}
