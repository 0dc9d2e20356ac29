//! The gateway as the frontend sees it: REST calls and a WebSocket, each
//! acting as one signed-in user.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::Stack;
use super::mesh::User;

/// A REST client acting as one user.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(stack: &(impl Stack + ?Sized), user: &User) -> Api {
        Api {
            base: stack.gateway_url().to_owned(),
            token: user.token.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(15));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .expect("the gateway answers within 15 s");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// A call that must succeed; returns its JSON.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.send(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} -> {status}: {json}"
        );
        json
    }
}

/// A WebSocket connection of one user.
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Socket {
    pub async fn connect(stack: &(impl Stack + ?Sized), user: &User) -> Socket {
        let mut request = stack.ws_url().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("treven.v1, bearer.{}", user.token).parse().unwrap(),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket opens");
        Socket { stream }
    }

    pub async fn send(&mut self, value: Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("send");
    }

    /// Reads messages until `done` says so (or `limit` passes); returns all.
    pub async fn until(&mut self, limit: Duration, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out; saw {seen:#?}");
            let Ok(Some(message)) = tokio::time::timeout(left, self.stream.next()).await else {
                panic!("the socket ended or timed out; saw {seen:#?}");
            };
            if let Message::Text(text) = message.expect("a frame") {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                let finished = done(&value);
                seen.push(value);
                if finished {
                    return seen;
                }
            }
        }
    }

    /// Reads until the gateway closes the socket (within `limit`); the close
    /// code and reason, and the messages seen before.
    pub async fn closed(&mut self, limit: Duration) -> (u16, String, Vec<Value>) {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "still open after {limit:?}; saw {seen:#?}");
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    seen.push(
                        serde_json::from_str(&text).unwrap_or(Value::String(text.to_string())),
                    );
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let frame = frame.expect("a close frame with a reason");
                    return (u16::from(frame.code), frame.reason.to_string(), seen);
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(error))) => {
                    panic!("the socket failed instead of closing: {error}; saw {seen:#?}")
                }
                Ok(None) => panic!("the socket ended without a close frame; saw {seen:#?}"),
                Err(_) => panic!("still open after {limit:?}; saw {seen:#?}"),
            }
        }
    }

    /// Reads until a message matches `wanted` (within `limit`) and returns it.
    pub async fn next_matching(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        self.until(limit, wanted)
            .await
            .pop()
            .expect("the matching message")
    }
}
