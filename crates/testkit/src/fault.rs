//! A fault-injecting HTTP proxy in front of an AWS emulator: requests pass
//! through to it unchanged, except those a test's rule picks, which are
//! answered as by a service that is unavailable (503 `ServiceUnavailable`,
//! in the AWS JSON protocol) instead. For the failure a
//! store cannot be made to produce on demand (one write of many refused),
//! with the real SDK on one side and moto on the other.
//!
//! ```no_run
//! # async fn demo(moto_endpoint: &str) {
//! use treven_testkit::fault::FaultProxy;
//! // Every DynamoDB PutItem of a chat message fails; the rest reach moto.
//! let proxy = FaultProxy::start(moto_endpoint, |target, body| {
//!     target == "DynamoDB_20120810.PutItem" && body.contains("\"MSG#")
//! })
//! .await;
//! let sdk = treven_testkit::sdk_for(proxy.endpoint(), "test", "test").await;
//! # }
//! ```
//!
//! Written here rather than taken from a crate: what it needs (an axum
//! fallback and one reqwest call) is shorter than any proxy crate's setup.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

/// Which requests fail: given the `X-Amz-Target` header (empty when absent)
/// and the body as text.
type Rule = dyn Fn(&str, &str) -> bool + Send + Sync;

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rule: Box<Rule>,
    refused: AtomicUsize,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0`, forwarding to `upstream` (such as moto's
    /// endpoint) every request that `rule` does not pick.
    pub async fn start(
        upstream: &str,
        rule: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            rule: Box::new(rule),
            refused: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            shared,
            task,
        }
    }

    /// Where the SDK should send its requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many requests the rule has refused so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large for the fault proxy",
        )
            .into_response();
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if (shared.rule)(target, &String::from_utf8_lossy(&body)) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        // The service unavailable, as in an outage: an SDK that retries
        // meets the same answer on every attempt.
        let error = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
            "message": "refused by the test's fault proxy",
        });
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
            error.to_string(),
        )
            .into_response();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            headers.append(name, value.clone());
        }
    }
    let sent = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(upstream) => upstream,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let bytes = upstream.bytes().await.unwrap_or_else(|_| Bytes::new());
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
