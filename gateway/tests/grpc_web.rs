//! gRPC-web on the REST port, with CORS for configured origins only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Edge;
use treven_mesh::Role;

/// Splits a grpc-web response body into (data messages, trailer text).
fn frames(body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut messages, mut trailers, mut rest) = (Vec::new(), String::new(), body);
    while rest.len() >= 5 {
        let flag = rest[0];
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + length];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload));
        } else {
            messages.push(payload.to_vec());
        }
        rest = &rest[5 + length..];
    }
    (messages, trailers)
}

#[tokio::test]
async fn grpc_web_calls_reach_services_authenticated_and_cors_is_restricted() {
    let edge = Edge::start(10_000).await;
    let base = edge
        .gateway_with(&[("TREVEN_CORS_ORIGINS", "http://app.treven.test".to_owned())])
        .await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Admin))
        .await;
    let url = format!("{base}/treven.tenants.v1.TenantsService/GetMe");
    let empty_message = vec![0u8, 0, 0, 0, 0];

    let response = edge
        .http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(&token)
        // An identity header from the client is ignored.
        .header("x-treven-context", "forged")
        .body(empty_message.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let (messages, trailers) = frames(&response.bytes().await.unwrap());
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    assert_eq!(messages.len(), 1);
    assert!(String::from_utf8_lossy(&messages[0]).contains("ann@acme.example"));

    // Without a token: UNAUTHENTICATED (16) in the gRPC status.
    let refused = edge
        .http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .body(empty_message)
        .send()
        .await
        .unwrap();
    let status = refused
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let (_, trailers) = frames(&refused.bytes().await.unwrap());
    assert!(
        status.as_deref() == Some("16") || trailers.contains("grpc-status:16"),
        "{status:?} {trailers}"
    );

    // CORS: the configured origin may call with the headers grpc-web needs.
    let preflight = |origin: &str| {
        edge.http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web",
            )
            .send()
    };
    let allowed = preflight("http://app.treven.test").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://app.treven.test"
    );
    let denied = preflight("http://evil.example").await.unwrap();
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    edge.stop().await;
}
