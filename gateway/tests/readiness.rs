//! `/readyz` as the load balancers read it: ready with tenants behind it,
//! rate limits reported, and 503 from the first moment of a drain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::Edge;

async fn readyz(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn readyz_reports_rate_limits_and_turns_unready_as_soon_as_draining_starts() {
    let edge = Edge::start(10_000).await;
    let (status, body) = readyz(&edge.base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rate_limits"], "on", "{body}");

    // A gateway whose Redis is down serves (fail open) but says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let without_redis = edge
        .gateway_with(&[("TREVEN_REDIS_URL", format!("redis://127.0.0.1:{port}"))])
        .await;
    let mut answer = (0, Value::Null);
    for _ in 0..100 {
        answer = readyz(&without_redis).await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(
        answer.1["rate_limits"], "off: redis unreachable, reconnecting",
        "{}",
        answer.1
    );

    // Draining: NOT ready at once, while the listener still answers during
    // the drain delay.
    let draining = edge
        .gateway_with(&[("TREVEN_DRAIN_DELAY_SECS", "5".to_owned())])
        .await;
    for _ in 0..100 {
        if readyz(&draining).await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    edge.shutdown.cancel();
    let (status, body) = readyz(&draining).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "draining", "{body}");
}
