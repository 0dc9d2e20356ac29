//! An answer given before the request body is read (no token, no such
//! method, a body over the limit) reaches the client, and an HTTP/1.1
//! connection kept alive stays usable for the next request — on every
//! protocol: gRPC-web, Connect and REST. A client sending a body is never
//! answered with a reset (`write EPIPE` in Node).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;

use support::Edge;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// One HTTP/1.1 response: status, headers (lowercase names), body
/// (de-chunked).
async fn read_response(
    reader: &mut BufReader<OwnedReadHalf>,
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "a status line: {line:?}");
    let status: u16 = line[9..12].parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let size =
                usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16).unwrap();
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    line.clear();
                    reader.read_line(&mut line).await.unwrap();
                    if line.trim_end().is_empty() {
                        break;
                    }
                    let (name, value) = line.trim_end().split_once(':').unwrap();
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        body.resize(length, 0);
        reader.read_exact(&mut body).await.unwrap();
    }
    (status, headers, body)
}

#[tokio::test]
async fn early_answers_leave_a_kept_alive_connection_usable() {
    let edge = Edge::start(10_000).await;
    let address = edge.base.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&address).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    // Larger than the gateway's body limit in these tests (64 KiB) and than
    // what a socket buffers unread.
    let body = vec![0u8; 512 * 1024];
    let cases = [
        // gRPC-web without a token.
        (
            "/treven.tenants.v1.TenantsService/GetMe",
            "application/grpc-web+proto",
            "",
        ),
        // gRPC-web to an internal RPC.
        (
            "/treven.tenants.v1.TenantsService/LookupUserBySub",
            "application/grpc-web+proto",
            "",
        ),
        // Connect without a token, unary and streaming.
        (
            "/treven.tenants.v1.TenantsService/GetMe",
            "application/json",
            "",
        ),
        (
            "/treven.agents.v1.AgentsService/SendMessage",
            "application/connect+json",
            "",
        ),
        // REST without a token, and with a bad one.
        ("/api/conversations", "application/json", ""),
        (
            "/api/conversations",
            "application/json",
            "Authorization: Bearer not-a-token\r\n",
        ),
    ];
    for (path, content_type, extra) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        write.write_all(head.as_bytes()).await.unwrap();
        write
            .write_all(&body)
            .await
            .unwrap_or_else(|e| panic!("{path} ({content_type}): the body was refused: {e}"));
        let (status, headers, answer) = read_response(&mut reader).await;
        let text = String::from_utf8_lossy(&answer);
        match content_type {
            "application/grpc-web+proto" => {
                assert_eq!(status, 200, "{path}");
                let grpc_status = headers.get("grpc-status").cloned().unwrap_or_else(|| {
                    text.split("grpc-status:")
                        .nth(1)
                        .map(|s| s.trim().chars().take_while(char::is_ascii_digit).collect())
                        .unwrap_or_default()
                });
                let expected = if path.ends_with("LookupUserBySub") {
                    "12"
                } else {
                    "16"
                };
                assert_eq!(grpc_status, expected, "{path}: {headers:?} {text}");
            }
            "application/connect+json" => {
                assert_eq!(status, 200, "{path}");
                assert!(text.contains("unauthenticated"), "{path}: {text}");
            }
            _ => {
                assert_eq!(status, 401, "{path} ({content_type}): {text}");
            }
        }
        assert_ne!(
            headers.get("connection").map(String::as_str),
            Some("close"),
            "{path}: the connection is kept"
        );
        // The same connection serves the next request.
        write
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (status, _, _) = read_response(&mut reader).await;
        assert_eq!(status, 200, "after {path} ({content_type})");
    }
    edge.stop().await;
}

#[tokio::test]
async fn an_http2_client_gets_the_early_answer_not_a_reset() {
    let edge = Edge::start(10_000).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (path, content_type) in [
        (
            "/treven.tenants.v1.TenantsService/GetMe",
            "application/json",
        ),
        ("/api/conversations", "application/json"),
        (
            "/treven.tenants.v1.TenantsService/GetMe",
            "application/grpc-web+proto",
        ),
    ] {
        for _ in 0..3 {
            let response = h2
                .post(edge.url(path))
                .header("content-type", content_type)
                .body(vec![0u8; 512 * 1024])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path} ({content_type}): {e}"));
            let status = response.status().as_u16();
            let grpc = response
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_owned());
            assert!(
                status == 401 || grpc.as_deref() == Some("16"),
                "{path} ({content_type}): {status} {grpc:?}"
            );
        }
    }
    edge.stop().await;
}
