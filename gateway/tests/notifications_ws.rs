//! Notification channels over the WebSocket: real Cognito tokens (moto),
//! real tenants (Postgres) for roles, real Redis for the fan-out. A caller
//! may follow `user:<id>` only for their own subject — decided by the
//! gateway from the verified token, never by asking a service (the
//! authoriser of this test refuses every other channel, and is never
//! consulted for user channels) — and receives the `notification` events
//! the reports service publishes there, and nobody else's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::{Edge, WsInstance};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use treven_gateway::caller::Caller;
use treven_gateway::ws::authorize::{ChannelAuthorizer, refusal};
use treven_mesh::events::{EventChannel, EventKind, EventPublisher};
use treven_mesh::{ErrorCode, OrgId, Role, ServiceError};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

/// Refuses every channel it is asked about (user channels never reach it).
#[derive(Debug)]
struct RefuseAll;

impl ChannelAuthorizer for RefuseAll {
    fn authorize<'a>(
        &'a self,
        _caller: &'a Caller,
        channel: EventChannel,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            assert!(
                !matches!(channel, EventChannel::User(_)),
                "user channels are decided by the gateway"
            );
            Err(refusal(ErrorCode::NotFound, &channel))
        })
    }
}

async fn connect(instance: &WsInstance, token: &str) -> Client {
    let mut request = instance.url.clone().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("treven.v1, bearer.{token}")).unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn next_within(client: &mut Client, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(other))) => panic!("unexpected frame {other:?}"),
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
    }
}

async fn next_json(client: &mut Client) -> Value {
    next_within(client, WAIT).await.expect("a message in time")
}

async fn subscribe(client: &mut Client, channel: &str) -> Value {
    client
        .send(Message::text(
            json!({"type": "subscribe", "channel": channel}).to_string(),
        ))
        .await
        .unwrap();
    next_json(client).await
}

fn user_channel(sub: &str) -> EventChannel {
    EventChannel::User(sub.parse().expect("Cognito subjects are UUIDs"))
}

async fn notify(org: OrgId, sub: &str, kind: &str) {
    let url =
        std::env::var("TREVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    EventPublisher::connect_lazy(&url)
        .unwrap()
        .publish(
            org,
            &user_channel(sub),
            EventKind::Notification,
            json!({"id": uuid::Uuid::now_v7(), "kind": kind, "reportId": uuid::Uuid::now_v7()}),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_user_follows_only_their_own_notifications() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let rival = edge.org("Rival").await;
    let (ann_sub, ann) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let (bob_sub, bob) = edge
        .member("bob@acme.example", acme, Some(Role::Viewer))
        .await;
    let instance = edge.ws_instance(&[], Some(Arc::new(RefuseAll))).await;
    let mut ann_ws = connect(&instance, &ann).await;
    let mut bob_ws = connect(&instance, &bob).await;

    // Another user's channel is refused, with no subscription made.
    let refused = subscribe(&mut ann_ws, &user_channel(&bob_sub).to_string()).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");
    assert_eq!(refused["channel"], user_channel(&bob_sub).to_string());
    // A user channel that is not a UUID is not a channel.
    let malformed = subscribe(&mut ann_ws, "user:ann").await;
    assert_eq!(malformed["code"], "VALIDATION_ERROR", "{malformed}");

    // Their own channel is followed, whatever their role.
    for (client, sub) in [(&mut ann_ws, &ann_sub), (&mut bob_ws, &bob_sub)] {
        let ack = subscribe(client, &user_channel(sub).to_string()).await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
    }

    // Each receives their own notifications only; the same subject's
    // channel in another organisation reaches nobody here.
    notify(rival, &ann_sub, "comment_added").await;
    notify(acme, &bob_sub, "report_approved").await;
    notify(acme, &ann_sub, "changes_requested").await;
    let event = next_json(&mut ann_ws).await;
    assert_eq!(event["type"], "notification", "{event}");
    assert_eq!(event["channel"], user_channel(&ann_sub).to_string());
    assert_eq!(event["data"]["kind"], "changes_requested");
    let event = next_json(&mut bob_ws).await;
    assert_eq!(event["type"], "notification", "{event}");
    assert_eq!(event["data"]["kind"], "report_approved");
    assert!(
        next_within(&mut ann_ws, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing else for ann"
    );
    assert!(
        next_within(&mut bob_ws, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing else for bob"
    );
    edge.stop().await;
}
