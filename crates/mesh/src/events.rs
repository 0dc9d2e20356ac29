//! Events for WebSocket clients, published through Redis.
//!
//! A service that has news about a resource (a report's progress, a run's
//! status) calls [`EventPublisher::publish`]. In one atomic round trip (a Lua
//! script) that:
//!
//! 1. appends the event to the stream `treven:stream:<org>:<channel>`
//!    (`XADD … MAXLEN ~ 1000`, expiring [`STREAM_RETENTION`] after the last
//!    event), which gives it its [`EventId`] and keeps a bounded history for
//!    clients that reconnect;
//! 2. publishes `{"id", "channel", "type", "data"}` on the pub/sub channel
//!    `treven:events:<org>:<channel>`, which every gateway instance receives
//!    (one `PSUBSCRIBE treven:events:*` each) and relays to its subscribed
//!    WebSocket clients.
//!
//! Both names start with the organisation, so a gateway that resolves a
//! client's subscription inside the client's organisation can never hand it
//! another organisation's events. Because the stream append and the publish
//! happen in one script, pub/sub messages of a channel arrive in id order and
//! an event is never published without being replayable.
//!
//! Redis is a relay here, not a store: the resources themselves live in their
//! services, and a client that missed more than the bounded history reloads
//! the resource.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::OrgId;
use crate::error::ServiceError;

/// The pattern every gateway instance subscribes to.
pub const PUBSUB_PATTERN: &str = "treven:events:*";
/// Prefix of the pub/sub channel names.
const PUBSUB_PREFIX: &str = "treven:events:";
/// Prefix of the stream keys.
const STREAM_PREFIX: &str = "treven:stream:";
/// Approximate number of events kept per stream for replay.
pub const STREAM_MAX_LEN: usize = 1000;
/// A stream with no new event for this long is removed.
pub const STREAM_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Appends to the stream, refreshes its expiry and publishes, atomically.
/// `ARGV[4]` is the event's JSON without its id (`{"channel":…}`); the id is
/// spliced in front (stream ids are digits and one dash, nothing to escape).
const PUBLISH_SCRIPT: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], '{"id":"' .. id .. '",' .. string.sub(ARGV[4], 2))
return id
"#;

/// Why publishing or replaying failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Redis could not be reached or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something that is not an event (a bug or a foreign
    /// writer on the key).
    #[error("malformed event: {0}")]
    Malformed(String),
}

impl From<EventError> for ServiceError {
    fn from(error: EventError) -> Self {
        match error {
            EventError::Redis(_) => ServiceError::unavailable(error),
            EventError::Malformed(_) => ServiceError::internal(error),
        }
    }
}

/// A resource that clients can follow: `report:<uuid>`,
/// `conversation:<uuid>`, `run:<uuid>` or `user:<uuid>` (a user's
/// notifications, keyed by their Cognito subject). The organisation is not
/// part of it: it always comes from the caller's verified context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventChannel {
    /// A report's progress and changes.
    Report(Uuid),
    /// A conversation's replies.
    Conversation(Uuid),
    /// An agent run's status.
    Run(Uuid),
    /// A user's notifications; the id is their Cognito subject. Only that
    /// user may follow it.
    User(Uuid),
}

impl EventChannel {
    /// The resource kind (`report`, `conversation`, `run`).
    pub const fn kind(&self) -> &'static str {
        match self {
            EventChannel::Report(_) => "report",
            EventChannel::Conversation(_) => "conversation",
            EventChannel::Run(_) => "run",
            EventChannel::User(_) => "user",
        }
    }

    /// The resource's id.
    pub const fn id(&self) -> Uuid {
        match self {
            EventChannel::Report(id)
            | EventChannel::Conversation(id)
            | EventChannel::Run(id)
            | EventChannel::User(id) => *id,
        }
    }

    /// The pub/sub channel of this resource in `org`.
    pub fn pubsub_name(&self, org: OrgId) -> String {
        format!("{PUBSUB_PREFIX}{org}:{self}")
    }

    /// The stream key of this resource in `org`.
    pub fn stream_key(&self, org: OrgId) -> String {
        format!("{STREAM_PREFIX}{org}:{self}")
    }

    /// The organisation and channel of a pub/sub channel name, `None` when
    /// the name is not one of ours.
    pub fn from_pubsub_name(name: &str) -> Option<(OrgId, EventChannel)> {
        let rest = name.strip_prefix(PUBSUB_PREFIX)?;
        let (org, channel) = rest.split_once(':')?;
        Some((org.parse().ok()?, channel.parse().ok()?))
    }
}

impl fmt::Display for EventChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

/// A channel name that is not `report:`, `conversation:`, `run:` or `user:`
/// followed by a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel must be report:<uuid>, conversation:<uuid>, run:<uuid> or user:<uuid>")]
pub struct InvalidChannel;

impl FromStr for EventChannel {
    type Err = InvalidChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s.split_once(':').ok_or(InvalidChannel)?;
        // Only the hyphenated form, so one resource has one channel name.
        if id.len() != 36 {
            return Err(InvalidChannel);
        }
        let id = Uuid::parse_str(id).map_err(|_| InvalidChannel)?;
        match kind {
            "report" => Ok(EventChannel::Report(id)),
            "conversation" => Ok(EventChannel::Conversation(id)),
            "run" => Ok(EventChannel::Run(id)),
            "user" => Ok(EventChannel::User(id)),
            _ => Err(InvalidChannel),
        }
    }
}

impl Serialize for EventChannel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventChannel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// What an event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A report changed or made progress (`report:update`).
    #[serde(rename = "report:update")]
    ReportUpdate,
    /// A piece of an assistant reply (`chat:response`).
    #[serde(rename = "chat:response")]
    ChatResponse,
    /// A tool call of an assistant reply (`chat:tool`).
    #[serde(rename = "chat:tool")]
    ChatTool,
    /// An agent run changed status (`agent:status`).
    #[serde(rename = "agent:status")]
    AgentStatus,
    /// A new entry in a user's notification inbox (`notification`).
    #[serde(rename = "notification")]
    Notification,
}

impl EventKind {
    /// The name clients see in `"type"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::ReportUpdate => "report:update",
            EventKind::ChatResponse => "chat:response",
            EventKind::ChatTool => "chat:tool",
            EventKind::AgentStatus => "agent:status",
            EventKind::Notification => "notification",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of an event: its Redis stream id (`<ms>-<seq>`). Ids of one
/// channel grow strictly, so they order events and de-duplicate replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId {
    millis: u64,
    sequence: u64,
}

impl EventId {
    /// Before every event.
    pub const ZERO: EventId = EventId {
        millis: 0,
        sequence: 0,
    };

    /// The Redis server time (Unix milliseconds) at which it was added.
    pub const fn millis(&self) -> u64 {
        self.millis
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.millis, self.sequence)
    }
}

/// Text that is not a stream id `<ms>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event ids look like 1712345678901-0")]
pub struct InvalidEventId;

impl FromStr for EventId {
    type Err = InvalidEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (millis, sequence) = s.split_once('-').ok_or(InvalidEventId)?;
        let digits = |part: &str| {
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidEventId);
            }
            part.parse::<u64>().map_err(|_| InvalidEventId)
        };
        Ok(EventId {
            millis: digits(millis)?,
            sequence: digits(sequence)?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// One event as WebSocket clients receive it:
/// `{"id": "1712345678901-0", "channel": "report:…", "type": "report:update", "data": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its id, to resume after.
    pub id: EventId,
    /// The resource it is about.
    pub channel: EventChannel,
    /// What it says.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The payload, defined per kind by the publishing service.
    pub data: serde_json::Value,
}

/// The stored part of an event: everything but the id.
#[derive(Serialize, Deserialize)]
struct EventBody {
    channel: EventChannel,
    #[serde(rename = "type")]
    kind: EventKind,
    data: serde_json::Value,
}

/// Reads `TREVEN_REDIS_URL`: `redis://127.0.0.1:6379` by default locally;
/// outside local runs it is required and must be `rediss://` (ElastiCache
/// with in-transit encryption and an AUTH token).
pub fn redis_url(env: &crate::config::Env) -> Result<String, crate::config::ConfigError> {
    use crate::config::Environment;
    let local = Environment::from_env(env)? == Environment::Local;
    let url = match env.get("TREVEN_REDIS_URL") {
        Some(url) => url,
        None if local => return Ok("redis://127.0.0.1:6379".to_owned()),
        None => return env.required("TREVEN_REDIS_URL"),
    };
    let parsed = redis::parse_redis_url(&url)
        .ok_or_else(|| env.error("TREVEN_REDIS_URL", "not a redis:// or rediss:// URL"))?;
    if !local && parsed.scheme() != "rediss" {
        return Err(env.error(
            "TREVEN_REDIS_URL",
            "must be a rediss:// URL outside local runs (TLS to Redis)",
        ));
    }
    Ok(url)
}

/// A Redis client for `url`; `rediss://` verifies the server against the
/// system roots plus `SSL_CERT_FILE` and `TREVEN_TLS_CA_FILE` (the roots
/// installed with [`crate::tls::install_trust_roots`]).
pub fn redis_client(url: &str) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss://") {
        crate::tls::install_crypto_provider();
        let roots = crate::tls::trust_roots().system_and_extra_pem();
        return redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots),
            },
        );
    }
    redis::Client::open(url)
}

/// `host:port` of a Redis URL, without its credentials (for messages).
pub fn redis_peer(url: &str) -> String {
    redis::parse_redis_url(url)
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or_default(),
                u.port().unwrap_or(6379)
            )
        })
        .unwrap_or_else(|| "an unparsable URL".to_owned())
}

/// Connects once to the Redis at `url` (the value of `variable`): `Ok` when
/// it answers PING; an error naming the variable and the peer when TLS
/// fails (a plaintext server under `rediss://`, an untrusted certificate) or
/// AUTH is refused, which a reconnect cannot fix; `Ok` with a warning when
/// it is merely unreachable (callers reconnect in the background).
pub async fn check_redis(url: &str, variable: &str) -> anyhow::Result<()> {
    let peer = redis_peer(url);
    // TLS first, on its own: a plaintext Redis never answers a ClientHello,
    // which the Redis client would only report as a timeout.
    if url.starts_with("rediss://")
        && let Some(parsed) = redis::parse_redis_url(url)
    {
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let port = parsed.port().unwrap_or(6379);
        let address = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next());
        if let Some(address) = address {
            crate::tls::install_crypto_provider();
            let roots = crate::tls::trust_roots().system_and_extra_pem();
            let config = crate::tls::client_config_for(&roots)
                .map_err(|e| anyhow::anyhow!("{variable}: {e}"))?;
            match crate::tls::probe(config, variable, &host, address, Duration::from_secs(3)).await
            {
                Ok(()) => {}
                Err(crate::tls::ProbeError::Refused(problem)) => {
                    anyhow::bail!("{problem} (Redis at {peer})")
                }
                Err(crate::tls::ProbeError::Unreachable(problem)) => {
                    tracing::warn!(variable, %peer, problem, "redis unreachable at start, reconnecting in the background");
                    return Ok(());
                }
            }
        }
    }
    let client = redis_client(url)
        .map_err(|e| anyhow::anyhow!("{variable}: cannot use Redis at {peer}: {e}"))?;
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if is_permanent(&error) => Err(anyhow::anyhow!(
            "{variable}: Redis at {peer} refused: {}",
            describe_redis_error(&error)
        )),
        Ok(Err(error)) => {
            tracing::warn!(variable, %peer, %error, "redis unreachable at start, reconnecting in the background");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(variable, %peer, "redis did not answer at start, reconnecting in the background");
            Ok(())
        }
    }
}

/// Whether a Redis error is a TLS or AUTH failure (not an outage).
fn is_permanent(error: &redis::RedisError) -> bool {
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || error.kind() == redis::ErrorKind::InvalidClientConfig
    {
        return true;
    }
    let text = error.to_string();
    text.contains("WRONGPASS") || text.contains("NOAUTH") || is_tls_failure(error)
}

fn is_tls_failure(error: &redis::RedisError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = current.source();
    }
    false
}

fn describe_redis_error(error: &redis::RedisError) -> String {
    if is_tls_failure(error) {
        let text = error.to_string();
        if text.contains("InvalidContentType") || text.contains("corrupt message") {
            return format!("TLS failed (a plaintext server?): {text}");
        }
        return format!("TLS failed: {text}");
    }
    error.to_string()
}

/// Publishes events and reads their recent history.
#[derive(Clone)]
pub struct EventPublisher {
    redis: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
}

impl fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPublisher").finish_non_exhaustive()
    }
}

impl EventPublisher {
    /// Publishes over `redis` (a connection manager reconnects by itself).
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            script: std::sync::Arc::new(redis::Script::new(PUBLISH_SCRIPT)),
        }
    }

    /// A publisher for the Redis at `url` that connects on first use, so a
    /// process can start while Redis is down. Calls fail fast (1 s to
    /// connect, 2 s per command) instead of queueing behind an outage.
    pub fn connect_lazy(url: &str) -> Result<Self, EventError> {
        let client = redis_client(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self::new(manager))
    }

    /// Publishes `data` as a `kind` event on `channel` of `org` and returns
    /// its id. Appending to the replay stream and publishing to live
    /// subscribers happen atomically, in one round trip.
    pub async fn publish(
        &self,
        org: OrgId,
        channel: &EventChannel,
        kind: EventKind,
        data: serde_json::Value,
    ) -> Result<EventId, EventError> {
        let body = serde_json::to_string(&EventBody {
            channel: *channel,
            kind,
            data,
        })
        .map_err(|e| EventError::Malformed(e.to_string()))?;
        let id: String = self
            .script
            .key(channel.stream_key(org))
            .arg(STREAM_MAX_LEN)
            .arg(STREAM_RETENTION.as_secs())
            .arg(channel.pubsub_name(org))
            .arg(body)
            .invoke_async(&mut self.redis.clone())
            .await?;
        id.parse()
            .map_err(|_| EventError::Malformed(format!("stream id {id:?}")))
    }

    /// Up to `max` events of `channel` in `org` published after `after`
    /// (exclusive), oldest first.
    pub async fn replay(
        &self,
        org: OrgId,
        channel: &EventChannel,
        after: EventId,
        max: usize,
    ) -> Result<Vec<Event>, EventError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(channel.stream_key(org))
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.redis.clone())
            .await?;
        entries
            .into_iter()
            .map(|(id, fields)| decode_entry(&id, &fields))
            .collect()
    }

    /// The id of the newest event of `channel` in `org`, `None` when it has
    /// none (or its history expired).
    pub async fn latest_id(
        &self,
        org: OrgId,
        channel: &EventChannel,
    ) -> Result<Option<EventId>, EventError> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(channel.stream_key(org))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.redis.clone())
            .await?;
        entries
            .first()
            .map(|(id, _)| {
                id.parse()
                    .map_err(|_| EventError::Malformed(format!("stream id {id:?}")))
            })
            .transpose()
    }
}

/// An event from a stream entry `id` with fields `["e", <body>]`.
fn decode_entry(id: &str, fields: &[String]) -> Result<Event, EventError> {
    let id: EventId = id
        .parse()
        .map_err(|_| EventError::Malformed(format!("stream id {id:?}")))?;
    let body = fields
        .chunks_exact(2)
        .find(|pair| pair[0] == "e")
        .map(|pair| pair[1].as_str())
        .ok_or_else(|| EventError::Malformed(format!("entry {id} has no body")))?;
    let body: EventBody = serde_json::from_str(body)
        .map_err(|e| EventError::Malformed(format!("entry {id}: {e}")))?;
    Ok(Event {
        id,
        channel: body.channel,
        kind: body.kind,
        data: body.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    fn org() -> OrgId {
        OrgId::new(Uuid::now_v7())
    }

    #[test]
    fn channels_parse_strictly_and_round_trip() {
        let id = Uuid::now_v7();
        for text in [
            format!("report:{id}"),
            format!("conversation:{id}"),
            format!("run:{id}"),
        ] {
            let channel: EventChannel = text.parse().expect("valid");
            assert_eq!(channel.to_string(), text);
            assert_eq!(channel.id(), id);
        }
        for bad in [
            String::new(),
            "report".to_owned(),
            format!("reports:{id}"),
            format!("report:{}", id.simple()),
            format!("report:{id}:x"),
            format!("Report:{id}"),
            "report:*".to_owned(),
        ] {
            assert_eq!(bad.parse::<EventChannel>(), Err(InvalidChannel), "{bad}");
        }
    }

    #[test]
    fn pubsub_names_carry_the_organisation() {
        let org = org();
        let channel = EventChannel::Run(Uuid::now_v7());
        let name = channel.pubsub_name(org);
        assert_eq!(name, format!("treven:events:{org}:{channel}"));
        assert_eq!(
            channel.stream_key(org),
            format!("treven:stream:{org}:{channel}")
        );
        assert_eq!(EventChannel::from_pubsub_name(&name), Some((org, channel)));
        assert_eq!(EventChannel::from_pubsub_name("treven:rl:x"), None);
        assert_eq!(
            EventChannel::from_pubsub_name(&format!("treven:events:not-an-org:{channel}")),
            None
        );
    }

    #[test]
    fn event_ids_order_like_redis() {
        let a: EventId = "1712345678901-0".parse().expect("id");
        let b: EventId = "1712345678901-1".parse().expect("id");
        let c: EventId = "1712345678902-0".parse().expect("id");
        assert!(EventId::ZERO < a && a < b && b < c);
        assert_eq!(c.to_string(), "1712345678902-0");
        assert_eq!(a.millis(), 1_712_345_678_901);
        for bad in ["", "1", "-1", "1-", "a-1", "1-1-1", "+1-0", "1 -0"] {
            assert_eq!(bad.parse::<EventId>(), Err(InvalidEventId), "{bad:?}");
        }
    }

    #[test]
    fn events_serialise_as_clients_receive_them() {
        let channel = EventChannel::Report(Uuid::nil());
        let event = Event {
            id: "5-1".parse().expect("id"),
            channel,
            kind: EventKind::ReportUpdate,
            data: serde_json::json!({"progress": 0.5}),
        };
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "id": "5-1",
                "channel": "report:00000000-0000-0000-0000-000000000000",
                "type": "report:update",
                "data": {"progress": 0.5},
            })
        );
        assert_eq!(serde_json::from_value::<Event>(json).expect("back"), event);
    }

    fn redis_url() -> String {
        std::env::var("TREVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// Against the real Redis of the test environment.
    #[tokio::test]
    async fn published_events_reach_subscribers_and_replay_exclusively() {
        let publisher = EventPublisher::connect_lazy(&redis_url()).expect("url");
        let (org, other_org) = (org(), org());
        let channel = EventChannel::Report(Uuid::now_v7());

        let client = redis::Client::open(redis_url()).expect("url");
        let mut pubsub = client.get_async_pubsub().await.expect("redis");
        pubsub
            .subscribe(channel.pubsub_name(org))
            .await
            .expect("subscribe");
        let mut messages = pubsub.into_on_message();

        assert_eq!(
            publisher.latest_id(org, &channel).await.expect("redis"),
            None
        );
        let mut ids = Vec::new();
        for step in 0..5 {
            let id = publisher
                .publish(
                    org,
                    &channel,
                    EventKind::ReportUpdate,
                    serde_json::json!({"step": step}),
                )
                .await
                .expect("publish");
            ids.push(id);
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
        assert_eq!(
            publisher.latest_id(org, &channel).await.expect("redis"),
            ids.last().copied()
        );

        // Live: the same JSON clients get, with the stream id.
        for (step, id) in ids.iter().enumerate() {
            let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
                .await
                .expect("in time")
                .expect("a message");
            let event: Event =
                serde_json::from_str(&message.get_payload::<String>().expect("text"))
                    .expect("an event");
            assert_eq!(event.id, *id);
            assert_eq!(event.channel, channel);
            assert_eq!(event.kind, EventKind::ReportUpdate);
            assert_eq!(event.data, serde_json::json!({"step": step}));
        }

        // Replay: strictly after the given id, bounded, oldest first.
        let replayed = publisher
            .replay(org, &channel, ids[1], 100)
            .await
            .expect("replay");
        assert_eq!(
            replayed.iter().map(|e| e.id).collect::<Vec<_>>(),
            ids[2..].to_vec()
        );
        assert_eq!(replayed[0].data, serde_json::json!({"step": 2}));
        let bounded = publisher
            .replay(org, &channel, EventId::ZERO, 2)
            .await
            .expect("replay");
        assert_eq!(
            bounded.iter().map(|e| e.id).collect::<Vec<_>>(),
            ids[..2].to_vec()
        );

        // Another organisation's stream of the same resource id is separate.
        assert!(
            publisher
                .replay(other_org, &channel, EventId::ZERO, 100)
                .await
                .expect("replay")
                .is_empty()
        );

        // The history expires.
        let ttl: i64 = redis::cmd("TTL")
            .arg(channel.stream_key(org))
            .query_async(&mut publisher.redis.clone())
            .await
            .expect("ttl");
        assert!(ttl > 0 && ttl <= STREAM_RETENTION.as_secs() as i64, "{ttl}");
    }

    #[tokio::test]
    async fn the_history_is_bounded() {
        let publisher = EventPublisher::connect_lazy(&redis_url()).expect("url");
        let (org, channel) = (org(), EventChannel::Run(Uuid::now_v7()));
        for step in 0..(STREAM_MAX_LEN + 300) {
            publisher
                .publish(
                    org,
                    &channel,
                    EventKind::AgentStatus,
                    serde_json::json!(step),
                )
                .await
                .expect("publish");
        }
        let length: usize = redis::cmd("XLEN")
            .arg(channel.stream_key(org))
            .query_async(&mut publisher.redis.clone())
            .await
            .expect("xlen");
        // `MAXLEN ~` trims whole nodes: at least the bound, never much more.
        assert!(
            (STREAM_MAX_LEN..STREAM_MAX_LEN + 200).contains(&length),
            "{length}"
        );
    }

    #[tokio::test]
    async fn redis_down_is_an_error_not_a_hang() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let publisher =
            EventPublisher::connect_lazy(&format!("redis://127.0.0.1:{port}")).expect("url");
        let started = std::time::Instant::now();
        let result = publisher
            .publish(
                org(),
                &EventChannel::Report(Uuid::now_v7()),
                EventKind::ReportUpdate,
                serde_json::json!({}),
            )
            .await;
        assert!(matches!(result, Err(EventError::Redis(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let error: ServiceError = result.expect_err("down").into();
        assert_eq!(error.code(), crate::ErrorCode::Unavailable);
    }
}
