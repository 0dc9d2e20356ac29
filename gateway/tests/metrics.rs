//! `GET /metrics` on the gateway's :8080 after REST traffic: request counts
//! and latency histograms by route template (never the raw path), the
//! rate-limit rejections, and, in this one process, the RPC metrics of the
//! tenants server the gateway called.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Edge;
use treven_mesh::Role;

/// The value of the sample of `name` whose labels include every one of
/// `labels` (`key="value"`), summed over the matching lines.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[tokio::test]
async fn metrics_show_route_counts_latency_histograms_and_rate_limit_rejections() {
    let edge = Edge::start(5).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Viewer))
        .await;
    let before = edge
        .http
        .get(edge.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Five calls pass, two are rate limited.
    let mut codes = Vec::new();
    for _ in 0..7 {
        let response = edge
            .http
            .get(edge.url("/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        codes.push(response.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);
    // A user id in the path is a template variable, never a label value.
    let user = uuid::Uuid::new_v4();
    let missing = edge
        .http
        .get(edge.url(&format!("/api/users/{user}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 429, "still limited");
    // A path that is no route is `unmatched`.
    let nowhere = edge
        .http
        .get(edge.url(&format!("/api/nowhere/{user}")))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);

    let response = edge.http.get(edge.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    let delta =
        |name: &str, labels: &[&str]| sample(&text, name, labels) - sample(&before, name, labels);

    let me = [r#"http_request_method="GET""#, r#"http_route="/api/me""#];
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(
        delta(count, &[me[0], me[1], r#"http_response_status_code="200""#]),
        5.0,
        "{text}"
    );
    assert_eq!(
        delta(count, &[me[0], me[1], r#"http_response_status_code="429""#]),
        2.0,
        "{text}"
    );
    assert_eq!(
        delta(count, &[r#"http_route="/api/users/{id}""#]),
        1.0,
        "{text}"
    );
    assert_eq!(delta(count, &[r#"http_route="unmatched""#]), 1.0, "{text}");
    assert!(!text.contains(&user.to_string()), "no raw path in a label");
    // The latency histogram: buckets up to +Inf, a sum.
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        delta(
            "http_server_request_duration_seconds_bucket",
            &[me[1], r#"http_response_status_code="200""#, r#"le="+Inf""#]
        ),
        5.0
    );
    assert!(
        delta(
            "http_server_request_duration_seconds_sum",
            &[me[1], r#"http_response_status_code="200""#]
        ) > 0.0
    );
    assert_eq!(
        delta("treven_gateway_rate_limit_rejections_total", &[]),
        3.0,
        "{text}"
    );
    // The gateway's calls to tenants, counted by the tenants server (one
    // process here, so one /metrics shows both).
    assert!(
        delta(
            "rpc_server_call_duration_seconds_count",
            &[
                r#"rpc_service="treven.tenants.v1.TenantsService""#,
                r#"rpc_grpc_status_code="0""#,
            ]
        ) >= 5.0,
        "{text}"
    );

    // Not through a load balancer: the public edge never serves it.
    let proxied = edge
        .http
        .get(edge.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 404);
    edge.stop().await;
}
