//! One gateway instance's share of the event fan-out: a registry of local
//! connections and their subscriptions, fed by one Redis pattern
//! subscription (`PSUBSCRIBE treven:events:*`) on a dedicated connection.
//!
//! Every connection has a bounded queue. The bridge never waits for a
//! connection: it `try_send`s, and a connection whose queue is full is
//! flagged as a slow consumer (it is told and dropped by its own task), so
//! one stuck browser cannot hold back the others or grow memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use treven_mesh::events::{Event, EventChannel, EventId, PUBSUB_PATTERN};
use treven_mesh::{CancellationToken, OrgId};

/// Identifies a connection inside one instance.
pub type ConnectionId = u64;

/// An event ready to be written: serialised once, shared by every
/// connection that receives it.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its channel.
    pub channel: EventChannel,
    /// Its id.
    pub id: EventId,
    /// Its JSON text.
    pub text: Utf8Bytes,
}

impl Delivered {
    /// Serialises `event`.
    pub fn new(event: &Event) -> Result<Self, serde_json::Error> {
        Ok(Self {
            channel: event.channel,
            id: event.id,
            text: Utf8Bytes::from(serde_json::to_string(event)?),
        })
    }
}

/// What the hub hands a connection. The event is boxed so the queue's
/// slots are a pointer wide: a queue allocates its first block of slots when
/// the connection joins, and every idle connection holds it.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A live event of one of its channels.
    Event(Box<Delivered>),
    /// The Redis subscription was lost; live events stop until it is back.
    BridgeDown,
    /// The Redis subscription is back; missed events can be caught up.
    BridgeUp,
}

struct Handle {
    queue: mpsc::Sender<Delivery>,
    slow: CancellationToken,
}

#[derive(Default)]
struct Registry {
    connections: HashMap<ConnectionId, Handle>,
    channels: HashMap<(OrgId, EventChannel), HashSet<ConnectionId>>,
}

/// The registry of this instance's connections.
#[derive(Default)]
pub struct Hub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    bridge_up: AtomicBool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("bridge_up", &self.bridge_connected())
            .finish_non_exhaustive()
    }
}

/// A connection's membership of the hub; dropping it removes the
/// connection and its subscriptions.
#[derive(Debug)]
pub struct Membership {
    hub: Arc<Hub>,
    /// The connection's id.
    pub id: ConnectionId,
    /// Its queue of deliveries.
    pub queue: mpsc::Receiver<Delivery>,
    /// Cancelled when its queue overflowed.
    pub slow: CancellationToken,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

impl Hub {
    /// Whether the Redis subscription is up.
    pub fn bridge_connected(&self) -> bool {
        self.bridge_up.load(Ordering::Acquire)
    }

    /// Connections of this instance.
    pub fn connections(&self) -> usize {
        self.registry
            .lock()
            .map(|r| r.connections.len())
            .unwrap_or(0)
    }

    /// Adds a connection with a queue of `capacity` deliveries.
    pub fn join(self: &Arc<Self>, capacity: usize) -> Membership {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let slow = CancellationToken::new();
        if let Ok(mut registry) = self.registry.lock() {
            registry.connections.insert(
                id,
                Handle {
                    queue,
                    slow: slow.clone(),
                },
            );
            crate::metrics::ws_connections().add(1, &[]);
        }
        Membership {
            hub: Arc::clone(self),
            id,
            queue: receiver,
            slow,
        }
    }

    /// Delivers `channel` of `org` to connection `id` from now on.
    pub fn subscribe(&self, id: ConnectionId, org: OrgId, channel: EventChannel) {
        if let Ok(mut registry) = self.registry.lock()
            && registry.connections.contains_key(&id)
            && registry
                .channels
                .entry((org, channel))
                .or_default()
                .insert(id)
        {
            crate::metrics::ws_subscriptions().add(1, &[]);
        }
    }

    /// Stops delivering `channel` of `org` to connection `id`.
    pub fn unsubscribe(&self, id: ConnectionId, org: OrgId, channel: EventChannel) {
        if let Ok(mut registry) = self.registry.lock() {
            let key = (org, channel);
            if let Some(members) = registry.channels.get_mut(&key) {
                if members.remove(&id) {
                    crate::metrics::ws_subscriptions().add(-1, &[]);
                }
                if members.is_empty() {
                    registry.channels.remove(&key);
                }
            }
        }
    }

    fn leave(&self, id: ConnectionId) {
        if let Ok(mut registry) = self.registry.lock() {
            if registry.connections.remove(&id).is_some() {
                crate::metrics::ws_connections().add(-1, &[]);
            }
            let mut dropped = 0;
            registry.channels.retain(|_, members| {
                if members.remove(&id) {
                    dropped += 1;
                }
                !members.is_empty()
            });
            if dropped > 0 {
                crate::metrics::ws_subscriptions().add(-dropped, &[]);
            }
        }
    }

    /// Queues `event` of `org` for every local subscriber; returns how many
    /// got it. A subscriber whose queue is full is flagged slow instead.
    pub fn dispatch(&self, org: OrgId, event: &Delivered) -> usize {
        let Ok(registry) = self.registry.lock() else {
            return 0;
        };
        let Some(members) = registry.channels.get(&(org, event.channel)) else {
            return 0;
        };
        members
            .iter()
            .filter_map(|id| registry.connections.get(id))
            .filter(|handle| offer(handle, Delivery::Event(Box::new(event.clone()))))
            .count()
    }

    /// Queues `delivery` for every connection.
    fn broadcast(&self, delivery: &Delivery) {
        if let Ok(registry) = self.registry.lock() {
            for handle in registry.connections.values() {
                offer(handle, delivery.clone());
            }
        }
    }

    fn set_bridge(&self, up: bool) {
        let was = self.bridge_up.swap(up, Ordering::AcqRel);
        if was != up {
            self.broadcast(if up {
                &Delivery::BridgeUp
            } else {
                &Delivery::BridgeDown
            });
        }
    }
}

/// Queues without waiting; a full queue marks the connection slow.
fn offer(handle: &Handle, delivery: Delivery) -> bool {
    match handle.queue.try_send(delivery) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            handle.slow.cancel();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// How often the bridge pings Redis on its subscription connection, to
/// notice a connection that died silently.
const BRIDGE_PING: Duration = Duration::from_secs(10);
/// How long connecting, subscribing or a ping may take.
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(3);
/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Relays Redis pub/sub events to `hub` until `shutdown`, reconnecting with
/// exponential backoff whenever the subscription is lost.
pub async fn run_bridge(hub: Arc<Hub>, client: redis::Client, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = bridge_once(&hub, &client, &mut backoff) => outcome,
        };
        hub.set_bridge(false);
        tracing::warn!(reason = %outcome, retry_ms = backoff.as_millis() as u64, "event bridge lost redis");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription's life; returns why it ended.
async fn bridge_once(hub: &Hub, client: &redis::Client, backoff: &mut Duration) -> String {
    let pubsub = match tokio::time::timeout(BRIDGE_TIMEOUT, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(error)) => return error.to_string(),
        Err(_) => return "connect timed out".to_owned(),
    };
    let (mut sink, mut stream) = pubsub.split();
    match tokio::time::timeout(BRIDGE_TIMEOUT, sink.psubscribe(PUBSUB_PATTERN)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return error.to_string(),
        Err(_) => return "subscribe timed out".to_owned(),
    }
    tracing::info!(pattern = PUBSUB_PATTERN, "event bridge subscribed");
    *backoff = BACKOFF_MIN;
    hub.set_bridge(true);
    let mut ping = tokio::time::interval(BRIDGE_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => relay(hub, &message),
                None => return "subscription connection closed".to_owned(),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(BRIDGE_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return error.to_string(),
                    Err(_) => return "ping timed out".to_owned(),
                }
            }
        }
    }
}

/// Hands one pub/sub message to the hub.
fn relay(hub: &Hub, message: &redis::Msg) {
    let Some((org, channel)) = EventChannel::from_pubsub_name(message.get_channel_name()) else {
        tracing::warn!(
            channel = message.get_channel_name(),
            "event on an unknown channel dropped"
        );
        return;
    };
    let event = match serde_json::from_slice::<Event>(message.get_payload_bytes()) {
        Ok(event) if event.channel == channel => event,
        Ok(_) => {
            tracing::warn!(%channel, "event naming another channel dropped");
            return;
        }
        Err(error) => {
            tracing::warn!(%channel, %error, "malformed event dropped");
            return;
        }
    };
    match Delivered::new(&event) {
        Ok(delivered) => {
            hub.dispatch(org, &delivered);
        }
        Err(error) => tracing::warn!(%channel, %error, "event not serialisable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(channel: EventChannel, id: &str) -> Delivered {
        Delivered::new(&Event {
            id: id.parse().unwrap_or_default(),
            channel,
            kind: treven_mesh::events::EventKind::ReportUpdate,
            data: serde_json::json!({}),
        })
        .unwrap_or_else(|_| unreachable!())
    }

    /// The sum of the samples of `name` in the process's `/metrics` text.
    fn gauge(name: &str) -> f64 {
        treven_mesh::metrics::render()
            .lines()
            .filter(|l| l.split([' ', '{']).next() == Some(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Connections and subscriptions are gauges that follow joins, (repeated)
    /// subscriptions, unsubscriptions and connections closing. (Deltas: each
    /// test runs in its own process under `cargo xtask test`.)
    #[test]
    fn the_connection_and_subscription_gauges_follow_the_registry() {
        let (connections, subscriptions) = (
            "treven_gateway_ws_connections",
            "treven_gateway_ws_subscriptions",
        );
        let hub = Arc::new(Hub::default());
        let org = OrgId::new(uuid::Uuid::now_v7());
        let (one, two) = (
            EventChannel::Report(uuid::Uuid::now_v7()),
            EventChannel::Report(uuid::Uuid::now_v7()),
        );
        let (c0, s0) = (gauge(connections), gauge(subscriptions));
        let a = hub.join(4);
        let b = hub.join(4);
        hub.subscribe(a.id, org, one);
        hub.subscribe(a.id, org, one); // again: still one subscription
        hub.subscribe(a.id, org, two);
        hub.subscribe(b.id, org, one);
        assert_eq!(gauge(connections) - c0, 2.0);
        assert_eq!(gauge(subscriptions) - s0, 3.0);
        hub.unsubscribe(a.id, org, two);
        hub.unsubscribe(a.id, org, two); // not subscribed any more
        assert_eq!(gauge(subscriptions) - s0, 2.0);
        drop(a); // closing drops its remaining subscription
        assert_eq!(gauge(connections) - c0, 1.0);
        assert_eq!(gauge(subscriptions) - s0, 1.0);
        drop(b);
        assert_eq!(gauge(connections) - c0, 0.0);
        assert_eq!(gauge(subscriptions) - s0, 0.0);
    }

    #[test]
    fn events_reach_only_subscribers_of_the_same_org_and_channel() {
        let hub = Arc::new(Hub::default());
        let (org_a, org_b) = (
            OrgId::new(uuid::Uuid::now_v7()),
            OrgId::new(uuid::Uuid::now_v7()),
        );
        let channel = EventChannel::Report(uuid::Uuid::now_v7());
        let mut a = hub.join(4);
        let mut b = hub.join(4);
        hub.subscribe(a.id, org_a, channel);
        hub.subscribe(b.id, org_b, channel);
        assert_eq!(hub.dispatch(org_a, &event(channel, "1-0")), 1);
        assert!(matches!(a.queue.try_recv(), Ok(Delivery::Event(e)) if e.id.to_string() == "1-0"));
        assert!(
            b.queue.try_recv().is_err(),
            "org B never sees org A's event"
        );
        hub.unsubscribe(a.id, org_a, channel);
        assert_eq!(hub.dispatch(org_a, &event(channel, "2-0")), 0);
        drop(b);
        assert_eq!(hub.connections(), 1);
        drop(a);
        assert_eq!(hub.connections(), 0);
        assert!(
            hub.registry
                .lock()
                .map(|r| r.channels.is_empty())
                .unwrap_or(false)
        );
    }

    #[test]
    fn a_full_queue_marks_the_connection_slow_without_blocking() {
        let hub = Arc::new(Hub::default());
        let org = OrgId::new(uuid::Uuid::now_v7());
        let channel = EventChannel::Run(uuid::Uuid::now_v7());
        let member = hub.join(2);
        hub.subscribe(member.id, org, channel);
        assert_eq!(hub.dispatch(org, &event(channel, "1-0")), 1);
        assert_eq!(hub.dispatch(org, &event(channel, "2-0")), 1);
        assert!(!member.slow.is_cancelled());
        assert_eq!(hub.dispatch(org, &event(channel, "3-0")), 0);
        assert!(member.slow.is_cancelled());
    }

    #[test]
    fn bridge_changes_are_broadcast_once() {
        let hub = Arc::new(Hub::default());
        let mut member = hub.join(8);
        hub.set_bridge(true);
        hub.set_bridge(true);
        hub.set_bridge(false);
        assert!(matches!(member.queue.try_recv(), Ok(Delivery::BridgeUp)));
        assert!(matches!(member.queue.try_recv(), Ok(Delivery::BridgeDown)));
        assert!(member.queue.try_recv().is_err());
    }
}
