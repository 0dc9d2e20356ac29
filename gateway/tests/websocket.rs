//! The WebSocket listener end to end: real Cognito tokens (moto), real
//! tenants (Postgres) for roles, real Redis for the fan-out, events
//! published with `treven_mesh::events::EventPublisher` as services do, and
//! a tokio-tungstenite client. Each test uses fresh resource ids because
//! Redis is shared by tests running in parallel.
//!
//! The reports and agents services are not part of the edge yet, so most
//! tests check subscriptions with an in-test authoriser that knows which
//! resources exist in which organisation; one test shows the real gRPC
//! authoriser refusing when the owning service cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::{Edge, WsInstance};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use treven_gateway::caller::Caller;
use treven_gateway::ws::authorize::{ChannelAuthorizer, refusal};
use treven_mesh::events::{EventChannel, EventId, EventKind, EventPublisher};
use treven_mesh::{ErrorCode, OrgId, Role, ServiceError};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a message that should come.
const WAIT: Duration = Duration::from_secs(15);

/// Which resources exist in which organisation, as the owning services
/// would answer.
#[derive(Debug, Default)]
struct Resources(Mutex<HashSet<(OrgId, EventChannel)>>);

impl Resources {
    fn add(&self, org: OrgId, channel: EventChannel) {
        self.0.lock().unwrap().insert((org, channel));
    }
}

impl ChannelAuthorizer for Resources {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        channel: EventChannel,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let exists = self
            .0
            .lock()
            .unwrap()
            .contains(&(caller.identity.org_id, channel));
        Box::pin(async move {
            if exists {
                Ok(())
            } else {
                Err(refusal(ErrorCode::NotFound, &channel))
            }
        })
    }
}

fn redis_url() -> String {
    std::env::var("TREVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn publisher() -> EventPublisher {
    EventPublisher::connect_lazy(&redis_url()).unwrap()
}

fn new_report() -> EventChannel {
    EventChannel::Report(uuid::Uuid::now_v7())
}

async fn publish(org: OrgId, channel: EventChannel, data: Value) -> EventId {
    publisher()
        .publish(org, &channel, EventKind::ReportUpdate, data)
        .await
        .unwrap()
}

/// How the client hands over its token.
#[derive(Clone, Copy)]
enum Via {
    /// `Sec-WebSocket-Protocol: treven.v1, bearer.<jwt>` (what browsers do).
    Protocol,
    /// `?token=<jwt>`: refused.
    Query,
}

fn request(
    instance: &WsInstance,
    token: Option<&str>,
    via: Via,
) -> tungstenite::handshake::client::Request {
    let url = match (token, via) {
        (Some(token), Via::Query) => format!("{}?token={token}", instance.url),
        _ => instance.url.clone(),
    };
    let mut request = url.into_client_request().unwrap();
    let offer = match (token, via) {
        (Some(token), Via::Protocol) => format!("treven.v1, bearer.{token}"),
        _ => "treven.v1".to_owned(),
    };
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&offer).unwrap(),
    );
    request
}

/// Connects or returns the HTTP status of the refused upgrade.
async fn try_connect(
    request: tungstenite::handshake::client::Request,
) -> Result<(Client, tungstenite::handshake::client::Response), u16> {
    match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => Ok(connected),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("handshake failed without an HTTP answer: {other}"),
    }
}

async fn connect(instance: &WsInstance, token: &str, via: Via) -> Client {
    let (client, response) = try_connect(request(instance, Some(token), via))
        .await
        .expect("upgraded");
    // The server picks treven.v1 and never echoes the token.
    assert_eq!(response.headers()["sec-websocket-protocol"], "treven.v1");
    client
}

async fn send(client: &mut Client, message: Value) {
    client
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next JSON message (pings and pongs skipped), or `None` when the
/// connection ended or nothing came within `wait`.
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

/// Asserts that no message arrives for `wait`.
async fn assert_silent(client: &mut Client, wait: Duration) {
    if let Some(message) = next_within(client, wait).await {
        panic!("expected nothing, got {message}");
    }
}

async fn subscribe(client: &mut Client, channel: EventChannel, last: Option<EventId>) -> Value {
    let mut message = json!({"type": "subscribe", "channel": channel.to_string()});
    if let Some(last) = last {
        message["lastEventId"] = json!(last.to_string());
    }
    send(client, message).await;
    let ack = next_json(client).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["channel"], channel.to_string());
    ack
}

/// The next event, checked to be a `report:update` of `channel`.
async fn next_event(client: &mut Client, channel: EventChannel) -> Value {
    let event = next_json(client).await;
    assert_eq!(event["type"], "report:update", "{event}");
    assert_eq!(event["channel"], channel.to_string());
    event
}

/// Reads until the connection ends; returns the close frame, if any.
async fn close_frame(client: &mut Client, wait: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the connection is still open after {wait:?}"),
        }
    }
}

/// Waits until `instance` has `count` connections.
async fn wait_for_connections(instance: &WsInstance, count: usize) {
    let deadline = Instant::now() + WAIT;
    while instance.hub.connections() != count {
        assert!(
            Instant::now() < deadline,
            "{} connections, expected {count}",
            instance.hub.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_reach_subscribers_on_every_gateway_instance() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let (report, unrelated) = (new_report(), new_report());
    resources.add(acme, report);
    resources.add(acme, unrelated);
    let one = edge.ws_instance(&[], Some(resources.clone())).await;
    let two = edge.ws_instance(&[], Some(resources.clone())).await;

    let mut first = connect(&one, &token, Via::Protocol).await;
    let mut second = connect(&two, &token, Via::Protocol).await;
    assert_eq!(subscribe(&mut first, report, None).await["replayed"], 0);
    assert_eq!(subscribe(&mut second, report, None).await["replayed"], 0);

    let mut ids = Vec::new();
    for step in 0..3 {
        ids.push(publish(acme, report, json!({"progress": step})).await);
    }
    publish(acme, unrelated, json!({"progress": 99})).await;

    for client in [&mut first, &mut second] {
        for (step, id) in ids.iter().enumerate() {
            let event = next_event(client, report).await;
            assert_eq!(event["id"], id.to_string());
            assert_eq!(event["data"], json!({"progress": step}));
        }
        // Nothing of a channel the client did not subscribe to.
        assert_silent(client, Duration::from_millis(300)).await;
    }
    assert_eq!(one.hub.connections(), 1);
    assert_eq!(two.hub.connections(), 1);
    edge.stop().await;
}

#[tokio::test]
async fn another_organisation_can_neither_subscribe_nor_receive() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let rival = edge.org("Rival").await;
    let (_, ann) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let (_, bob) = edge
        .member("bob@rival.example", rival, Some(Role::Admin))
        .await;
    let resources = Arc::new(Resources::default());
    let report = new_report();
    resources.add(acme, report);
    let instance = edge.ws_instance(&[], Some(resources.clone())).await;
    let mut ann = connect(&instance, &ann, Via::Protocol).await;
    let mut bob = connect(&instance, &bob, Via::Protocol).await;

    // Acme's report does not exist for Rival: refused, no subscription.
    send(
        &mut bob,
        json!({"type": "subscribe", "channel": report.to_string()}),
    )
    .await;
    let refused = next_json(&mut bob).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "NOT_FOUND");
    assert_eq!(refused["channel"], report.to_string());

    subscribe(&mut ann, report, None).await;
    let id = publish(acme, report, json!({"secret": "acme"})).await;
    assert_eq!(next_event(&mut ann, report).await["id"], id.to_string());
    assert_silent(&mut bob, Duration::from_millis(500)).await;

    // Even a subscription to the same resource id inside Rival (were it to
    // exist there) is keyed by Rival: Acme's events never reach it.
    resources.add(rival, report);
    subscribe(&mut bob, report, None).await;
    publish(acme, report, json!({"secret": "acme again"})).await;
    assert_eq!(
        next_event(&mut ann, report).await["data"]["secret"],
        "acme again"
    );
    let own = publish(rival, report, json!({"secret": "rival"})).await;
    let event = next_event(&mut bob, report).await;
    assert_eq!(event["id"], own.to_string());
    assert_eq!(event["data"]["secret"], "rival");
    assert_silent(&mut ann, Duration::from_millis(300)).await;
    assert_silent(&mut bob, Duration::from_millis(300)).await;

    // Unsubscribing stops delivery.
    send(
        &mut ann,
        json!({"type": "unsubscribe", "channel": report.to_string()}),
    )
    .await;
    assert_eq!(next_json(&mut ann).await["type"], "unsubscribed");
    publish(acme, report, json!({"after": "unsubscribe"})).await;
    assert_silent(&mut ann, Duration::from_millis(300)).await;
    edge.stop().await;
}

#[tokio::test]
async fn resuming_after_a_reconnect_delivers_the_missed_events_once() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let report = new_report();
    resources.add(acme, report);
    let one = edge.ws_instance(&[], Some(resources.clone())).await;
    let two = edge.ws_instance(&[], Some(resources.clone())).await;

    let mut client = connect(&one, &token, Via::Protocol).await;
    subscribe(&mut client, report, None).await;
    publish(acme, report, json!({"n": 1})).await;
    let seen = publish(acme, report, json!({"n": 2})).await;
    assert_eq!(next_event(&mut client, report).await["data"]["n"], 1);
    let last = next_event(&mut client, report).await;
    assert_eq!(last["id"], seen.to_string());
    client.close(None).await.unwrap();
    drop(client);

    // Missed while disconnected.
    for n in 3..=5 {
        publish(acme, report, json!({"n": n})).await;
    }
    // Reconnect to the other instance and resume while more events are
    // published at the same time, so some arrive live during the replay.
    let mut client = connect(&two, &token, Via::Protocol).await;
    let racing = tokio::spawn(async move {
        for n in 6..=40 {
            publish(acme, report, json!({"n": n})).await;
        }
    });
    let ack = subscribe(&mut client, report, Some(seen)).await;
    let replayed = ack["replayed"].as_u64().unwrap();
    assert!(replayed >= 3, "{ack}");
    let mut received = Vec::new();
    let mut previous = seen;
    while received.last() != Some(&40) {
        let event = next_event(&mut client, report).await;
        let id: EventId = event["id"].as_str().unwrap().parse().unwrap();
        assert!(id > previous, "ids increase: {id} after {previous}");
        previous = id;
        received.push(event["data"]["n"].as_u64().unwrap());
    }
    racing.await.unwrap();
    assert_eq!(
        received,
        (3..=40).collect::<Vec<u64>>(),
        "each once, in order"
    );
    assert_silent(&mut client, Duration::from_millis(500)).await;

    // A malformed lastEventId is refused.
    let other = new_report();
    resources.add(acme, other);
    send(
        &mut client,
        json!({"type": "subscribe", "channel": other.to_string(), "lastEventId": "yesterday"}),
    )
    .await;
    let refused = next_json(&mut client).await;
    assert_eq!(refused["code"], "VALIDATION_ERROR", "{refused}");

    // An id the stream never had (say Redis lost its history): told to
    // reload, then live events flow.
    let ack = subscribe(
        &mut client,
        other,
        Some("99999999999999-0".parse().unwrap()),
    )
    .await;
    assert_eq!(ack["replayed"], 0);
    assert_eq!(next_json(&mut client).await["type"], "resync");
    publish(acme, other, json!({"n": "after resync"})).await;
    assert_eq!(
        next_event(&mut client, other).await["data"]["n"],
        "after resync"
    );

    // More missed than the replay bound: told to reload, then live again.
    let bounded = edge
        .ws_instance(
            &[("TREVEN_WS_REPLAY_MAX", "5".to_owned())],
            Some(resources.clone()),
        )
        .await;
    let mut late = connect(&bounded, &token, Via::Protocol).await;
    let ack = subscribe(&mut late, report, Some(seen)).await;
    assert_eq!(ack["replayed"], 0);
    let resync = next_json(&mut late).await;
    assert_eq!(resync["type"], "resync", "{resync}");
    assert_eq!(resync["channel"], report.to_string());
    publish(acme, report, json!({"n": 41})).await;
    assert_eq!(next_event(&mut late, report).await["data"]["n"], 41);
    edge.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (sub, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let (_, stranger) = edge.member("sam@acme.example", acme, None).await;
    let instance = edge
        .ws_instance(&[], Some(Arc::new(Resources::default())))
        .await;

    let wrong_issuer = edge.pool.forge(
        json!({"iss": "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_other"}),
        "RS256",
        "dummy",
    );
    let refusals = [
        (request(&instance, None, Via::Protocol), 401),
        (request(&instance, Some("not-a-jwt"), Via::Protocol), 401),
        // A token in the URL is refused before it is even looked at.
        (request(&instance, Some("not-a-jwt"), Via::Query), 400),
        (request(&instance, Some(&token), Via::Query), 400),
        (request(&instance, Some(&wrong_issuer), Via::Protocol), 401),
        // Signed in, but no user in tenants.
        (request(&instance, Some(&stranger), Via::Protocol), 403),
    ];
    for (request, status) in refusals {
        assert_eq!(try_connect(request).await.err(), Some(status));
    }
    // Identity headers do not make a connection.
    let mut forged = request(&instance, None, Via::Protocol);
    forged.headers_mut().insert(
        "x-org-id",
        HeaderValue::from_str(&acme.to_string()).unwrap(),
    );
    assert_eq!(try_connect(forged).await.err(), Some(401));
    assert_eq!(instance.hub.connections(), 0);

    // The subprotocol offer is the only form: not an Authorization header.
    let mut with_header = request(&instance, None, Via::Protocol);
    with_header.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    assert_eq!(try_connect(with_header).await.err(), Some(401));

    // A connection ends when its token expires.
    let short = edge.pool.forge(
        json!({
            "sub": sub,
            "custom:orgId": acme.to_string(),
            "email": "ann@acme.example",
            "exp": support::chrono_now() + 2,
        }),
        "RS256",
        "dummy",
    );
    let mut expiring = connect(&instance, &short, Via::Protocol).await;
    let notice = next_json(&mut expiring).await;
    assert_eq!(notice["code"], "UNAUTHORIZED", "{notice}");
    let (code, reason) = close_frame(&mut expiring, WAIT)
        .await
        .expect("a close frame");
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    edge.stop().await;
}

#[tokio::test]
async fn bad_messages_and_limits_are_answered() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let channels: Vec<EventChannel> = (0..3).map(|_| new_report()).collect();
    for channel in &channels {
        resources.add(acme, *channel);
    }
    let instance = edge
        .ws_instance(
            &[
                ("TREVEN_WS_MAX_SUBSCRIPTIONS", "2".to_owned()),
                ("TREVEN_WS_MAX_MESSAGE_BYTES", "2048".to_owned()),
            ],
            Some(resources),
        )
        .await;
    let mut client = connect(&instance, &token, Via::Protocol).await;

    for bad in [
        json!({"type": "publish", "channel": channels[0].to_string()}),
        json!({"type": "subscribe", "channel": "report:not-a-uuid"}),
        json!({"type": "subscribe", "channel": format!("org:{acme}")}),
        json!({"type": "chat", "conversationId": "nope", "content": "hi"}),
    ] {
        send(&mut client, bad.clone()).await;
        let answer = next_json(&mut client).await;
        assert_eq!(answer["type"], "error", "{bad} → {answer}");
        assert_eq!(answer["code"], "VALIDATION_ERROR", "{bad} → {answer}");
    }
    client
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["code"], "VALIDATION_ERROR");

    subscribe(&mut client, channels[0], None).await;
    subscribe(&mut client, channels[1], None).await;
    send(
        &mut client,
        json!({"type": "subscribe", "channel": channels[2].to_string()}),
    )
    .await;
    let refused = next_json(&mut client).await;
    assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");

    // A message over the limit ends the connection.
    send(
        &mut client,
        json!({"type": "chat", "conversationId": uuid::Uuid::now_v7().to_string(), "content": "x".repeat(4096)}),
    )
    .await;
    // The rest of the oversized frame is never read, so the socket may be
    // reset under the close frame; either way the connection ends.
    if let Some((code, _)) = close_frame(&mut client, WAIT).await {
        assert_eq!(code, 1008);
    }
    wait_for_connections(&instance, 0).await;
    edge.stop().await;
}

/// A client socket with a small receive buffer, so a client that stops
/// reading fills up quickly.
async fn connect_small_buffer(instance: &WsInstance, token: &str) -> Client {
    let address: SocketAddr = instance
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let (client, _) = tokio_tungstenite::client_async(
        request(instance, Some(token), Via::Protocol),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    client
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_not_buffered() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let report = new_report();
    resources.add(acme, report);
    let instance = edge
        .ws_instance(
            &[("TREVEN_WS_QUEUE_EVENTS", "16".to_owned())],
            Some(resources),
        )
        .await;
    let mut client = connect_small_buffer(&instance, &token).await;
    subscribe(&mut client, report, None).await;
    assert_eq!(instance.hub.connections(), 1);

    // The client stops reading; events keep coming.
    let publisher = publisher();
    let padding = "x".repeat(8 * 1024);
    let started = Instant::now();
    let mut published = 0u64;
    while instance.hub.connections() > 0 && started.elapsed() < Duration::from_secs(60) {
        publisher
            .publish(
                acme,
                &report,
                EventKind::ReportUpdate,
                json!({"n": published, "padding": padding}),
            )
            .await
            .unwrap();
        published += 1;
    }
    assert_eq!(
        instance.hub.connections(),
        0,
        "dropped after {published} events"
    );

    // What had reached the client's socket is still readable, then the
    // connection ends: far fewer events than were published.
    let mut received = 0u64;
    let mut told = false;
    while let Some(message) = next_within(&mut client, Duration::from_secs(5)).await {
        match message["type"].as_str() {
            Some("report:update") => received += 1,
            Some("error") => {
                assert_eq!(message["code"], "RATE_LIMITED");
                told = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!(
        "slow consumer: dropped after {published} events, {received} had reached it, told: {told}"
    );
    assert!(
        received < published,
        "received {received} of {published} (told: {told})"
    );
    // Clean up the large stream this test made in the shared Redis.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(report.stream_key(acme))
        .query_async(&mut connection)
        .await
        .unwrap();
    edge.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_readers_and_close_silent_clients() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let report = new_report();
    resources.add(acme, report);
    let instance = edge
        .ws_instance(
            &[
                ("TREVEN_WS_PING_SECS", "1".to_owned()),
                ("TREVEN_WS_IDLE_TIMEOUT_SECS", "2".to_owned()),
            ],
            Some(resources),
        )
        .await;
    let mut silent = connect(&instance, &token, Via::Protocol).await;
    let mut reader = connect(&instance, &token, Via::Protocol).await;
    assert_eq!(instance.hub.connections(), 2);

    // The reader reads (and so answers pings) for well past the idle
    // timeout; the silent client reads nothing, so it answers no ping.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(frame) = tokio::time::timeout_at(until, reader.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "pinged every second: {pings}");
    assert_eq!(
        instance.hub.connections(),
        1,
        "the silent client was closed"
    );
    // Reading now answers the buffered pings; those late pongs may meet the
    // closed socket and reset it before the close frame is read.
    if let Some(frame) = close_frame(&mut silent, WAIT).await {
        assert_eq!(frame, (1001, "idle timeout".to_owned()));
    }

    // The reader is still served.
    subscribe(&mut reader, report, None).await;
    publish(acme, report, json!({"alive": true})).await;
    assert_eq!(next_event(&mut reader, report).await["data"]["alive"], true);
    edge.stop().await;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_real_authoriser_refuses_when_the_owner_is_unreachable() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    // Reports and agents are not running: the checks cannot be made.
    let instance = edge
        .ws_instance(
            &[
                (
                    "TREVEN_REPORTS_URL",
                    format!("http://127.0.0.1:{}", closed_port()),
                ),
                (
                    "TREVEN_AGENTS_URL",
                    format!("http://127.0.0.1:{}", closed_port()),
                ),
            ],
            None,
        )
        .await;
    let mut client = connect(&instance, &token, Via::Protocol).await;
    let id = uuid::Uuid::now_v7();
    let channels = [
        EventChannel::Report(id),
        EventChannel::Conversation(id),
        EventChannel::Run(id),
    ];
    for channel in channels {
        send(
            &mut client,
            json!({"type": "subscribe", "channel": channel.to_string()}),
        )
        .await;
        let refused = next_json(&mut client).await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["code"], "UNAVAILABLE", "{refused}");
        assert_eq!(refused["channel"], channel.to_string());
    }
    // Not subscribed: nothing arrives.
    publish(acme, channels[0], json!({"leak": true})).await;
    assert_silent(&mut client, Duration::from_millis(500)).await;

    // A chat goes to the agents service for real and reports it is down.
    send(
        &mut client,
        json!({"type": "chat", "conversationId": id.to_string(), "content": "Any new reports on GB?"}),
    )
    .await;
    let failed = next_json(&mut client).await;
    assert_eq!(failed["type"], "error", "{failed}");
    assert_eq!(failed["code"], "UNAVAILABLE", "{failed}");
    assert_eq!(failed["conversationId"], id.to_string());
    assert!(
        !failed["message"].as_str().unwrap().contains("127.0.0.1"),
        "no internals: {failed}"
    );
    edge.stop().await;
}

/// A TCP proxy in front of Redis that can be cut and restored, to play a
/// Redis outage for one gateway instance while other tests share Redis.
struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// A proxy in front of Redis; `url` is Redis' URL through it.
    async fn start() -> Self {
        let url = redis_url();
        let rest = url.trim_start_matches("redis://");
        let target = rest
            .rsplit_once('@')
            .map_or(rest, |(_, host)| host)
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        Self::to(url, target).await
    }

    /// A proxy in front of `target` (`host:port`), which appears in `url`.
    async fn to(url: String, target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxied = url.replace(&target, &listener.local_addr().unwrap().to_string());
        let up = Arc::new(AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        {
            let (up, pipes) = (up.clone(), pipes.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the connection fails at once
                    }
                    let target = target.clone();
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    pipes.lock().unwrap().push(pipe.abort_handle());
                }
            });
        }
        Self {
            url: proxied,
            up,
            pipes,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_redis_outage_is_reported_and_events_resume_after_it() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let report = new_report();
    resources.add(acme, report);
    let proxy = Proxy::start().await;
    let instance = edge
        .ws_instance(&[("TREVEN_REDIS_URL", proxy.url.clone())], Some(resources))
        .await;
    let mut client = connect(&instance, &token, Via::Protocol).await;
    subscribe(&mut client, report, None).await;
    publish(acme, report, json!({"n": 1})).await;
    assert_eq!(next_event(&mut client, report).await["data"]["n"], 1);

    // Redis goes away (for this instance): the client is told.
    proxy.cut();
    let notice = next_json(&mut client).await;
    assert_eq!(notice["type"], "error", "{notice}");
    assert_eq!(notice["code"], "UNAVAILABLE", "{notice}");
    assert!(!instance.hub.bridge_connected());
    // Published meanwhile (services reach Redis; this instance does not).
    publish(acme, report, json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Back: the missed event is caught up, then live events flow again.
    proxy.restore();
    assert_eq!(next_event(&mut client, report).await["data"]["n"], 2);
    assert!(instance.hub.bridge_connected());
    publish(acme, report, json!({"n": 3})).await;
    assert_eq!(next_event(&mut client, report).await["data"]["n"], 3);
    assert_silent(&mut client, Duration::from_millis(300)).await;
    edge.stop().await;
}

/// The user id of the caller holding `token` (`GET /api/me`).
async fn user_id(edge: &Edge, token: &str) -> String {
    let me: Value = edge
        .http
        .get(edge.url("/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["user"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_removed_users_websocket_stops_receiving_events_within_10_s() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, admin) = edge
        .member("ada@acme.example", acme, Some(Role::Admin))
        .await;
    let (_, ann) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let resources = Arc::new(Resources::default());
    let report = new_report();
    resources.add(acme, report);
    // The default recheck interval, and the default role cache (30 s): the
    // recheck must not depend on the cache expiring.
    let instance = edge.ws_instance(&[], Some(resources)).await;
    let mut removed = connect(&instance, &ann, Via::Protocol).await;
    let mut staying = connect(&instance, &admin, Via::Protocol).await;
    subscribe(&mut removed, report, None).await;
    subscribe(&mut staying, report, None).await;
    let first = publish(acme, report, json!({"n": 0})).await;
    assert_eq!(
        next_event(&mut removed, report).await["id"],
        first.to_string()
    );
    assert_eq!(
        next_event(&mut staying, report).await["id"],
        first.to_string()
    );

    // An admin removes ann through tenants.
    let ann_id = user_id(&edge, &ann).await;
    let deleted = edge
        .http
        .delete(edge.url(&format!("/api/users/{ann_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let removed_at = Instant::now();

    // Events keep coming on the report meanwhile.
    let publishing = tokio::spawn(async move {
        let mut last = None;
        for n in 1..=48 {
            last = Some(publish(acme, report, json!({"n": n})).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        last.unwrap()
    });
    let deadline = tokio::time::Instant::from_std(removed_at + Duration::from_secs(10));
    let mut told_at = None;
    let mut events_after_removal = 0;
    let (code, reason) = loop {
        match tokio::time::timeout_at(deadline, removed.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                assert!(told_at.is_none(), "nothing after the notice: {message}");
                match message["type"].as_str() {
                    Some("report:update") => events_after_removal += 1,
                    Some("error") => {
                        assert_eq!(message["code"], "FORBIDDEN", "{message}");
                        told_at = Some(removed_at.elapsed());
                    }
                    _ => panic!("unexpected {message}"),
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let frame = frame.expect("a close frame with a reason");
                break (u16::from(frame.code), frame.reason.to_string());
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(error))) => panic!("the socket failed instead of closing: {error}"),
            Ok(None) => panic!("the socket ended without a close frame"),
            Err(_) => panic!("still open 10 s after the removal"),
        }
    };
    let closed_after = removed_at.elapsed();
    eprintln!(
        "removed user: told after {told_at:?}, closed after {closed_after:?}, \
         {events_after_removal} events reached them in between"
    );
    assert_eq!((code, reason.as_str()), (1008, "access revoked"));
    assert!(told_at.is_some(), "told why before the close");
    assert!(closed_after < Duration::from_secs(10), "{closed_after:?}");
    wait_for_connections(&instance, 1).await;

    // Events published afterwards still reach the member who stayed.
    let last = publishing.await.unwrap();
    loop {
        let event = next_event(&mut staying, report).await;
        if event["id"] == last.to_string() {
            break;
        }
    }
    edge.stop().await;
}

/// Reports are readable by every member, runs only by analysts and admins
/// (as the owning services would answer).
#[derive(Debug, Default)]
struct ByRole(Resources);

impl ChannelAuthorizer for ByRole {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        channel: EventChannel,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let allowed = !matches!(channel, EventChannel::Run(_)) || caller.role != Role::Viewer;
        let exists = self.0.authorize(caller, channel);
        Box::pin(async move {
            exists.await?;
            if allowed {
                Ok(())
            } else {
                Err(refusal(ErrorCode::Forbidden, &channel))
            }
        })
    }
}

#[tokio::test]
async fn a_demoted_user_loses_the_subscriptions_their_new_role_may_not_follow() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, admin) = edge
        .member("ada@acme.example", acme, Some(Role::Admin))
        .await;
    let (_, ann) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let authorizer = Arc::new(ByRole::default());
    let (report, run) = (new_report(), EventChannel::Run(uuid::Uuid::now_v7()));
    authorizer.0.add(acme, report);
    authorizer.0.add(acme, run);
    let instance = edge
        .ws_instance(
            &[("TREVEN_GATEWAY_WS_RECHECK_SECS", "1".to_owned())],
            Some(authorizer),
        )
        .await;
    let mut client = connect(&instance, &ann, Via::Protocol).await;
    subscribe(&mut client, report, None).await;
    subscribe(&mut client, run, None).await;
    publish(acme, run, json!({"step": 1})).await;
    assert_eq!(next_event(&mut client, run).await["data"]["step"], 1);

    // An admin makes ann a viewer.
    let ann_id = user_id(&edge, &ann).await;
    let demoted = edge
        .http
        .patch(edge.url(&format!("/api/users/{ann_id}")))
        .bearer_auth(&admin)
        .json(&json!({"role": "ROLE_VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), 200);
    let demoted_at = Instant::now();
    let dropped = next_within(&mut client, Duration::from_secs(10))
        .await
        .expect("told within 10 s");
    eprintln!(
        "demoted user: run subscription dropped after {:?}",
        demoted_at.elapsed()
    );
    assert_eq!(dropped["type"], "error", "{dropped}");
    assert_eq!(dropped["code"], "FORBIDDEN", "{dropped}");
    assert_eq!(dropped["channel"], run.to_string());

    // The run's events stop; the report's still come; the connection stays.
    publish(acme, run, json!({"step": 2})).await;
    let kept = publish(acme, report, json!({"still": "here"})).await;
    let event = next_event(&mut client, report).await;
    assert_eq!(event["id"], kept.to_string());
    assert_silent(&mut client, Duration::from_millis(500)).await;

    // Subscribing to the run again is refused, though the gateway's role
    // cache (30 s) still says analyst.
    send(
        &mut client,
        json!({"type": "subscribe", "channel": run.to_string()}),
    )
    .await;
    let refused = next_json(&mut client).await;
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");
    assert_eq!(instance.hub.connections(), 1);
    edge.stop().await;
}

/// A `Write` into a shared buffer, to read what was logged.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_token_in_the_url_is_refused_clearly_and_never_logged() {
    // Everything this (single-threaded) test runtime logs, at debug.
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let instance = edge
        .ws_instance(&[], Some(Arc::new(Resources::default())))
        .await;
    // In the URL, even next to a valid offer: refused with a reason.
    let mut both = request(&instance, Some(&token), Via::Protocol);
    *both.uri_mut() = format!("{}?token={token}", instance.url).parse().unwrap();
    let refused = match tokio_tungstenite::connect_async(both).await {
        Err(tungstenite::Error::Http(response)) => response,
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    };
    assert_eq!(refused.status(), 400);
    let body: Value = serde_json::from_slice(refused.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Sec-WebSocket-Protocol"),
        "{body}"
    );
    assert_eq!(instance.hub.connections(), 0);
    // The same token in the offer works.
    let _client = connect(&instance, &token, Via::Protocol).await;
    edge.stop().await;

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("token in the url refused"),
        "the refusal is logged"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logged.contains(signature), "the token was logged");
    assert!(!logged.contains("token="), "the URL was logged");
}

#[tokio::test]
async fn a_connection_whose_membership_cannot_be_checked_closes_after_three_tries() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let tenants_url = edge
        .pairs
        .iter()
        .find(|(name, _)| *name == "TREVEN_TENANTS_URL")
        .map(|(_, url)| url.clone())
        .unwrap();
    let target = tenants_url.trim_start_matches("http://").to_owned();
    let tenants = Proxy::to(tenants_url, target).await;
    let instance = edge
        .ws_instance(
            &[
                ("TREVEN_TENANTS_URL", tenants.url.clone()),
                ("TREVEN_GATEWAY_WS_RECHECK_SECS", "1".to_owned()),
            ],
            Some(Arc::new(Resources::default())),
        )
        .await;
    let mut client = connect(&instance, &token, Via::Protocol).await;
    // Checks pass while tenants answers.
    assert_silent(&mut client, Duration::from_millis(2500)).await;

    // Tenants unreachable: a few failed checks are tolerated, then the
    // connection is told and closed (never kept open unverified).
    tenants.cut();
    let cut_at = Instant::now();
    let notice = next_json(&mut client).await;
    assert_eq!(notice["type"], "error", "{notice}");
    assert_eq!(notice["code"], "UNAVAILABLE", "{notice}");
    let (code, reason) = close_frame(&mut client, WAIT).await.expect("a close frame");
    assert_eq!((code, reason.as_str()), (1013, "cannot verify access"));
    let after = cut_at.elapsed();
    assert!(after >= Duration::from_secs(2), "three checks: {after:?}");
    assert!(after < Duration::from_secs(15), "{after:?}");
    edge.stop().await;
}
