//! One WebSocket connection: its subscriptions, queue, heartbeats and chats.
//!
//! One task owns the socket and does everything in order, so what a client
//! receives on a channel is always: `subscribed`, the replayed events, then
//! live events, each id once and in increasing order. Slow work (asking an
//! owning service whether a subscription is allowed, relaying a chat) runs
//! in child tasks that report back; they end with the connection.
//!
//! Membership is checked again on a timer ([`super::recheck`]): a removed
//! user's connection is closed with 1008 `access revoked` and a demoted
//! user's subscriptions the new role may not follow are dropped, each told
//! with an `error` frame. Subscriptions are always checked with the least
//! privileged of the cached role and the last rechecked one.
//!
//! Exactly-once across resume: each subscription keeps a cursor, the id of
//! the last event the client was given (or the newest event in the stream
//! when it subscribed without `lastEventId`). The live subscription is
//! registered *before* the stream is read after the cursor, so nothing
//! published in between is lost, and any event at or below the cursor —
//! replayed already, or older — is dropped when it arrives live.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use treven_mesh::events::{EventChannel, EventError, EventId, STREAM_RETENTION};
use treven_mesh::{ErrorCode, Role, ServiceError};

use super::Shared;
use super::authorize::{act_as, authorize_channel};
use super::chat::{ChatMessage, relay_chat};
use super::hub::{Delivered, Delivery, Membership};
use super::protocol::{self, ClientMessage, Scope};
use super::recheck::{self, MAX_UNKNOWN, Recheck};
use crate::auth::Identity;

/// Chats one connection may have streaming at once.
const MAX_CHATS: usize = 2;
/// Attempts to catch up a channel after Redis came back.
const CATCH_UP_ATTEMPTS: u32 = 3;
/// How long the last words (an error, a close frame) may take to send.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The client went away or the socket failed.
    Gone,
    /// The client does not read fast enough.
    Slow,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

/// Where a chat task writes its reply's frames: the connection's one
/// channel of task outcomes (a second channel for chats held a block of
/// 32 frames, ~1.3 KB, on every idle connection; #18, row 4).
pub(super) struct ChatOut(mpsc::Sender<Box<Internal>>);

impl ChatOut {
    /// Queues `message` for the socket; an error once the connection ended.
    pub(super) async fn send(&self, message: Message) -> Result<(), ()> {
        self.0
            .send(Box::new(Internal::Chat(message)))
            .await
            .map_err(|_| ())
    }
}

/// What child tasks report to the connection.
enum Internal {
    /// The owner allows the subscription (checked with `role`).
    Authorized {
        channel: EventChannel,
        resume: Option<EventId>,
        role: Role,
    },
    /// The subscription is refused.
    Refused {
        channel: EventChannel,
        error: ServiceError,
    },
    /// A frame of a chat's reply, in order with the chat's end.
    Chat(Message),
    /// A chat finished.
    ChatEnded,
    /// A membership check finished.
    Rechecked(Recheck),
}

/// The outcome of reading a channel's stream after a cursor.
enum CatchUp {
    /// These events, oldest first (at most the replay bound).
    Events(Vec<Delivered>),
    /// More were missed than can be replayed: continue after this id.
    Resync(EventId),
}

struct Session {
    shared: Arc<Shared>,
    identity: Identity,
    /// The role tenants last gave (at the upgrade, then at each recheck).
    role: Role,
    /// A membership check is running.
    rechecking: bool,
    /// Membership checks in a row that could not be answered.
    unknown_checks: u32,
    member: Membership,
    /// Live subscriptions and their cursors.
    subscriptions: HashMap<EventChannel, EventId>,
    /// Subscriptions waiting for the owner's answer.
    pending: HashSet<EventChannel>,
    chats: usize,
    /// Redis was lost since the last catch-up.
    interrupted: bool,
    last_seen: Instant,
    /// Outcomes of the connection's own tasks, boxed (see [`Delivery`]).
    internal: mpsc::Sender<Box<Internal>>,
    tasks: JoinSet<()>,
}

/// Serves one upgraded connection of `identity` until it ends.
pub async fn run(shared: Arc<Shared>, mut socket: WebSocket, identity: Identity, role: Role) {
    let member = shared.hub.join(shared.config.queue_events);
    let connection = member.id;
    let org_id = identity.org_id;
    tracing::info!(connection, %org_id, "websocket connected");
    let (internal, mut internal_rx) = mpsc::channel(shared.config.max_subscriptions + MAX_CHATS);
    let mut ping = tokio::time::interval(shared.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let expires_in = Duration::from_secs(
        u64::try_from(identity.expires_at - chrono::Utc::now().timestamp()).unwrap_or(0),
    );
    let mut recheck_tick = recheck_timer(shared.config.recheck_interval);
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    let slow = member.slow.clone();
    let closing = shared.closing.clone();
    let mut session = Session {
        interrupted: !shared.hub.bridge_connected(),
        shared,
        identity,
        role,
        rechecking: false,
        unknown_checks: 0,
        member,
        subscriptions: HashMap::new(),
        pending: HashSet::new(),
        chats: 0,
        last_seen: Instant::now(),
        internal,
        tasks: JoinSet::new(),
    };
    let end = loop {
        let step = tokio::select! {
            () = slow.cancelled() => Err(End::Slow),
            () = closing.cancelled() => Err(End::Close(close_code::RESTART, "server restarting")),
            () = &mut expiry => {
                let _ = session.send(&mut socket, protocol::error(ErrorCode::Unauthorized, "your token expired; reconnect with a new one", Scope::Connection)).await;
                Err(End::Close(close_code::POLICY, "token expired"))
            }
            // The handlers' futures are boxed: each lives only while it
            // runs, and an idle connection's task holds none of them (the
            // task is as large as its largest await; unboxed, every idle
            // connection would carry room for a subscription's gRPC call).
            frame = socket.recv() => Box::pin(session.on_frame(&mut socket, frame)).await,
            Some(delivery) = session.member.queue.recv() => Box::pin(session.on_delivery(&mut socket, delivery)).await,
            Some(internal) = internal_rx.recv() => Box::pin(session.on_internal(&mut socket, *internal)).await,
            _ = ping.tick() => Box::pin(session.on_tick(&mut socket)).await,
            _ = recheck_tick.tick() => {
                session.start_recheck();
                Ok(())
            }
            Some(_) = session.tasks.join_next(), if !session.tasks.is_empty() => Ok(()),
        };
        if let Err(end) = step {
            break end;
        }
    };
    session.tasks.abort_all();
    farewell(&mut socket, &end).await;
    tracing::info!(connection, %org_id, reason = ?end, "websocket closed");
}

/// [`act_as`] with the least privileged of the cached role and `known`, the
/// role the last membership check found (the cache may be older).
async fn act_as_known(
    shared: &Shared,
    identity: &Identity,
    known: Role,
) -> Result<crate::caller::Caller, ServiceError> {
    let caller = act_as(shared, identity).await?;
    let role = recheck::least(caller.role, known);
    if role == caller.role {
        return Ok(caller);
    }
    Ok(recheck::caller_with_role(shared, identity, role))
}

/// Ticks every `period`, the first one at a random point of the first
/// period, so connections opened together do not check together.
fn recheck_timer(period: Duration) -> tokio::time::Interval {
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    let offset = u64::try_from(uuid::Uuid::new_v4().as_u128() % u128::from(period_ms)).unwrap_or(0);
    let first = tokio::time::Instant::now() + Duration::from_millis(offset.max(1));
    let mut timer = tokio::time::interval_at(first, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// The last frames of a connection the server ends.
async fn farewell(socket: &mut WebSocket, end: &End) {
    let (code, reason) = match end {
        End::Gone => return,
        End::Slow => {
            let warning = protocol::error(
                ErrorCode::RateLimited,
                "slow consumer: events arrived faster than they were read; reconnect and resume with lastEventId",
                Scope::Connection,
            );
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, socket.send(warning)).await;
            (close_code::AGAIN, "slow consumer")
        }
        End::Close(code, reason) => (*code, *reason),
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    if !matches!(
        tokio::time::timeout(FAREWELL_TIMEOUT, socket.send(close)).await,
        Ok(Ok(()))
    ) || matches!(end, End::Slow)
    {
        return;
    }
    // The closing handshake: a moment for the client's close reply, so the
    // socket is not torn down under data still in flight.
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

impl Session {
    /// Writes one frame, giving up when the client stops reading.
    async fn send(&self, socket: &mut WebSocket, message: Message) -> Result<(), End> {
        tokio::select! {
            biased;
            () = self.member.slow.cancelled() => Err(End::Slow),
            sent = tokio::time::timeout(self.shared.config.send_timeout, socket.send(message)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Gone),
                Err(_) => Err(End::Slow),
            },
        }
    }

    async fn on_frame(
        &mut self,
        socket: &mut WebSocket,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Result<(), End> {
        let message = match frame {
            None => return Err(End::Gone),
            Some(Err(error)) => {
                tracing::info!(%error, "websocket read failed");
                return Err(End::Close(
                    close_code::POLICY,
                    "invalid frame or message too large",
                ));
            }
            Some(Ok(message)) => message,
        };
        self.last_seen = Instant::now();
        match message {
            Message::Text(text) => self.on_text(socket, text.as_str()).await,
            Message::Binary(_) => {
                let error = protocol::error(
                    ErrorCode::ValidationError,
                    "send JSON in text frames",
                    Scope::Connection,
                );
                self.send(socket, error).await
            }
            // Pongs are answered by the socket itself; a close is answered
            // on the next read, which then ends the connection.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Ok(()),
        }
    }

    async fn on_text(&mut self, socket: &mut WebSocket, text: &str) -> Result<(), End> {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            let error = protocol::error(
                ErrorCode::ValidationError,
                r#"expected {"type": "subscribe" | "unsubscribe" | "chat", ...}"#,
                Scope::Connection,
            );
            return self.send(socket, error).await;
        };
        match message {
            ClientMessage::Subscribe {
                channel,
                last_event_id,
            } => self.subscribe(socket, &channel, last_event_id).await,
            ClientMessage::Unsubscribe { channel } => self.unsubscribe(socket, &channel).await,
            ClientMessage::Chat {
                conversation_id,
                content,
                pii_decisions,
            } => {
                self.chat(socket, conversation_id, content, pii_decisions)
                    .await
            }
        }
    }

    async fn subscribe(
        &mut self,
        socket: &mut WebSocket,
        raw: &str,
        last_event_id: Option<String>,
    ) -> Result<(), End> {
        let scope = Scope::Channel(raw);
        let Ok(channel) = raw.parse::<EventChannel>() else {
            let error = protocol::error(
                ErrorCode::ValidationError,
                "channel must be report:<uuid>, conversation:<uuid>, run:<uuid> or user:<uuid>",
                scope,
            );
            return self.send(socket, error).await;
        };
        let resume = match last_event_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => match id.parse::<EventId>() {
                Ok(id) => Some(id),
                Err(reason) => {
                    let message = format!("lastEventId: {reason}");
                    let error = protocol::error(ErrorCode::ValidationError, &message, scope);
                    return self.send(socket, error).await;
                }
            },
        };
        if self.subscriptions.contains_key(&channel) {
            return self.send(socket, protocol::subscribed(&channel, 0)).await;
        }
        if self.pending.contains(&channel) {
            return Ok(());
        }
        let limit = self.shared.config.max_subscriptions;
        if self.subscriptions.len() + self.pending.len() >= limit {
            let message = format!("at most {limit} subscriptions per connection");
            let error = protocol::error(ErrorCode::RateLimited, &message, scope);
            return self.send(socket, error).await;
        }
        self.pending.insert(channel);
        let (shared, identity, report, known) = (
            Arc::clone(&self.shared),
            self.identity.clone(),
            self.internal.clone(),
            self.role,
        );
        self.tasks.spawn(async move {
            let verdict = match act_as_known(&shared, &identity, known).await {
                Ok(caller) => authorize_channel(shared.authorizer.as_ref(), &caller, channel)
                    .await
                    .map(|()| caller.role),
                Err(error) => Err(error),
            };
            let outcome = match verdict {
                Ok(role) => Internal::Authorized {
                    channel,
                    resume,
                    role,
                },
                Err(error) => Internal::Refused { channel, error },
            };
            let _ = report.send(Box::new(outcome)).await;
        });
        Ok(())
    }

    async fn unsubscribe(&mut self, socket: &mut WebSocket, raw: &str) -> Result<(), End> {
        let Ok(channel) = raw.parse::<EventChannel>() else {
            let error = protocol::error(
                ErrorCode::ValidationError,
                "channel must be report:<uuid>, conversation:<uuid>, run:<uuid> or user:<uuid>",
                Scope::Channel(raw),
            );
            return self.send(socket, error).await;
        };
        self.pending.remove(&channel);
        if self.subscriptions.remove(&channel).is_some() {
            self.shared
                .hub
                .unsubscribe(self.member.id, self.identity.org_id, channel);
        }
        self.send(socket, protocol::unsubscribed(&channel)).await
    }

    async fn chat(
        &mut self,
        socket: &mut WebSocket,
        conversation_id: String,
        content: String,
        pii_decisions: Vec<serde_json::Value>,
    ) -> Result<(), End> {
        let scope = Scope::Conversation(&conversation_id);
        let refusal = if uuid::Uuid::parse_str(&conversation_id).is_err() {
            Some((ErrorCode::ValidationError, "conversationId must be a UUID"))
        } else if content.trim().is_empty() {
            Some((ErrorCode::ValidationError, "content must not be empty"))
        } else if self.chats >= MAX_CHATS {
            Some((
                ErrorCode::RateLimited,
                "wait for a reply to finish before sending more",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            return self
                .send(socket, protocol::error(code, message, scope))
                .await;
        }
        self.chats += 1;
        let (shared, identity, out, report, known) = (
            Arc::clone(&self.shared),
            self.identity.clone(),
            ChatOut(self.internal.clone()),
            self.internal.clone(),
            self.role,
        );
        self.tasks.spawn(async move {
            match act_as_known(&shared, &identity, known).await {
                Ok(caller) => {
                    let pool = shared.gateway.routing().transcoder.pool().clone();
                    let agents = shared.agents.clone();
                    let message = ChatMessage {
                        conversation_id,
                        content,
                        pii_decisions,
                    };
                    relay_chat(agents, pool, caller, message, out).await;
                }
                Err(error) => {
                    let scope = Scope::Conversation(&conversation_id);
                    let _ = out
                        .send(protocol::error(error.code(), error.message(), scope))
                        .await;
                }
            }
            let _ = report.send(Box::new(Internal::ChatEnded)).await;
        });
        Ok(())
    }

    async fn on_internal(&mut self, socket: &mut WebSocket, internal: Internal) -> Result<(), End> {
        match internal {
            Internal::Authorized {
                channel,
                resume,
                role,
            } => {
                if !self.pending.remove(&channel) {
                    Ok(()) // unsubscribed while it was being checked
                } else if role != recheck::least(role, self.role) {
                    // Demoted while it was being checked.
                    let raw = channel.to_string();
                    let frame = protocol::error(
                        ErrorCode::Forbidden,
                        "your role changed; subscribe again",
                        Scope::Channel(&raw),
                    );
                    self.send(socket, frame).await
                } else {
                    self.activate(socket, channel, resume).await
                }
            }
            Internal::Refused { channel, error } => {
                if self.pending.remove(&channel) {
                    let raw = channel.to_string();
                    let frame =
                        protocol::error(error.code(), error.message(), Scope::Channel(&raw));
                    self.send(socket, frame).await
                } else {
                    Ok(())
                }
            }
            Internal::Chat(message) => self.send(socket, message).await,
            Internal::ChatEnded => {
                self.chats = self.chats.saturating_sub(1);
                Ok(())
            }
            Internal::Rechecked(outcome) => {
                self.rechecking = false;
                self.on_recheck(socket, outcome).await
            }
        }
    }

    /// Starts a membership check unless one is running.
    fn start_recheck(&mut self) {
        if std::mem::replace(&mut self.rechecking, true) {
            return;
        }
        let channels: Vec<EventChannel> = self.subscriptions.keys().copied().collect();
        let (shared, identity, report, known) = (
            Arc::clone(&self.shared),
            self.identity.clone(),
            self.internal.clone(),
            self.role,
        );
        self.tasks.spawn(async move {
            let outcome = recheck::recheck(&shared, &identity, known, channels).await;
            let _ = report.send(Box::new(Internal::Rechecked(outcome))).await;
        });
    }

    /// Acts on a membership check: closes a removed user's connection, drops
    /// the subscriptions a changed role may no longer follow.
    async fn on_recheck(&mut self, socket: &mut WebSocket, outcome: Recheck) -> Result<(), End> {
        match outcome {
            Recheck::Revoked => {
                tracing::info!(connection = self.member.id, org_id = %self.identity.org_id, "websocket user no longer a member");
                let frame = protocol::error(
                    ErrorCode::Forbidden,
                    "you are no longer a member of this organisation",
                    Scope::Connection,
                );
                let _ = self.send(socket, frame).await;
                Err(End::Close(close_code::POLICY, "access revoked"))
            }
            Recheck::Unknown(error) => {
                self.unknown_checks += 1;
                if self.unknown_checks < MAX_UNKNOWN {
                    return Ok(());
                }
                tracing::warn!(connection = self.member.id, %error, "websocket membership unverifiable, closing");
                let frame = protocol::error(
                    ErrorCode::Unavailable,
                    "cannot verify your access right now; reconnect later",
                    Scope::Connection,
                );
                let _ = self.send(socket, frame).await;
                Err(End::Close(close_code::AGAIN, "cannot verify access"))
            }
            Recheck::Member {
                role,
                checked,
                mut refused,
            } => {
                self.unknown_checks = 0;
                let changed = role != self.role;
                self.role = role;
                if let Some(checked) = checked {
                    // Made live with the old role while the check ran.
                    let unchecked = self
                        .subscriptions
                        .keys()
                        .filter(|channel| !checked.contains(channel))
                        .map(|channel| {
                            let again = ServiceError::new(ErrorCode::Forbidden, "subscribe again");
                            (*channel, again)
                        })
                        .collect::<Vec<_>>();
                    refused.extend(unchecked);
                }
                let why = if changed {
                    "your role changed"
                } else {
                    "access was checked again"
                };
                for (channel, error) in refused {
                    self.drop_subscription(socket, channel, why, &error).await?;
                }
                Ok(())
            }
        }
    }

    /// Ends a live subscription the caller may no longer follow (a new
    /// role, or a check made again that failed), and tells the client `why`.
    async fn drop_subscription(
        &mut self,
        socket: &mut WebSocket,
        channel: EventChannel,
        why: &str,
        error: &ServiceError,
    ) -> Result<(), End> {
        if self.subscriptions.remove(&channel).is_none() {
            return Ok(()); // unsubscribed meanwhile
        }
        self.shared
            .hub
            .unsubscribe(self.member.id, self.identity.org_id, channel);
        let raw = channel.to_string();
        let message = format!("{why}: {}", error.message());
        let frame = protocol::error(error.code(), &message, Scope::Channel(&raw));
        self.send(socket, frame).await
    }

    /// Makes an allowed subscription live: registers it, replays what the
    /// client missed, acknowledges.
    async fn activate(
        &mut self,
        socket: &mut WebSocket,
        channel: EventChannel,
        resume: Option<EventId>,
    ) -> Result<(), End> {
        let org = self.identity.org_id;
        // The newest event *before* going live: everything after it is new.
        let latest = match self.shared.events.latest_id(org, &channel).await {
            Ok(latest) => latest.unwrap_or_default(),
            Err(error) => return self.events_unavailable(socket, channel, &error).await,
        };
        let (cursor, unknown) = match resume {
            Some(id) if id <= latest => (id, false),
            // Newer than the stream knows (Redis lost its history, or a
            // made-up id): what was missed cannot be told.
            Some(_) => (latest, true),
            None => (latest, false),
        };
        // Live first, then the history after the cursor: nothing published
        // in between is lost, and duplicates are dropped by the cursor.
        self.shared.hub.subscribe(self.member.id, org, channel);
        let (cursor, events, resync) = match self.catch_up(channel, cursor).await {
            Ok(CatchUp::Events(events)) => (cursor, events, unknown),
            Ok(CatchUp::Resync(latest)) => (latest, Vec::new(), true),
            Err(error) => {
                self.shared.hub.unsubscribe(self.member.id, org, channel);
                return self.events_unavailable(socket, channel, &error).await;
            }
        };
        self.subscriptions.insert(channel, cursor);
        self.send(socket, protocol::subscribed(&channel, events.len()))
            .await?;
        if resync {
            self.send(socket, protocol::resync(&channel)).await?;
        }
        for event in events {
            self.deliver(socket, event).await?;
        }
        Ok(())
    }

    async fn events_unavailable(
        &self,
        socket: &mut WebSocket,
        channel: EventChannel,
        error: &EventError,
    ) -> Result<(), End> {
        tracing::warn!(%channel, %error, "subscription failed on redis");
        let raw = channel.to_string();
        let frame = protocol::error(
            ErrorCode::Unavailable,
            "events are unavailable right now, retry later",
            Scope::Channel(&raw),
        );
        self.send(socket, frame).await
    }

    /// The events of `channel` after `cursor`, or a resync when more were
    /// missed than the replay bound (or the history has expired).
    async fn catch_up(
        &self,
        channel: EventChannel,
        cursor: EventId,
    ) -> Result<CatchUp, EventError> {
        let org = self.identity.org_id;
        let events = &self.shared.events;
        let max = self.shared.config.replay_max;
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let retention_ms = u64::try_from(STREAM_RETENTION.as_millis()).unwrap_or(u64::MAX);
        let expired =
            cursor != EventId::ZERO && cursor.millis().saturating_add(retention_ms) < now_ms;
        let missed = if expired {
            Vec::new()
        } else {
            events.replay(org, &channel, cursor, max + 1).await?
        };
        if expired || missed.len() > max {
            let latest = events.latest_id(org, &channel).await?.unwrap_or(cursor);
            return Ok(CatchUp::Resync(latest.max(cursor)));
        }
        Ok(CatchUp::Events(
            missed
                .iter()
                .filter_map(|event| Delivered::new(event).ok())
                .collect(),
        ))
    }

    /// Writes `event` if its channel is subscribed and it is newer than the
    /// channel's cursor.
    async fn deliver(&mut self, socket: &mut WebSocket, event: Delivered) -> Result<(), End> {
        match self.subscriptions.get_mut(&event.channel) {
            Some(cursor) if event.id > *cursor => {
                *cursor = event.id;
                self.send(socket, Message::Text(event.text)).await
            }
            _ => Ok(()),
        }
    }

    async fn on_delivery(&mut self, socket: &mut WebSocket, delivery: Delivery) -> Result<(), End> {
        match delivery {
            Delivery::Event(event) => self.deliver(socket, *event).await,
            Delivery::BridgeDown => {
                if self.interrupted {
                    return Ok(());
                }
                self.interrupted = true;
                let frame = protocol::error(
                    ErrorCode::Unavailable,
                    "live events are interrupted; they resume by themselves",
                    Scope::Connection,
                );
                self.send(socket, frame).await
            }
            Delivery::BridgeUp => {
                if !std::mem::take(&mut self.interrupted) {
                    return Ok(());
                }
                let channels: Vec<(EventChannel, EventId)> =
                    self.subscriptions.iter().map(|(c, i)| (*c, *i)).collect();
                for (channel, cursor) in channels {
                    self.recover(socket, channel, cursor).await?;
                }
                Ok(())
            }
        }
    }

    /// Replays what `channel` missed while Redis was away.
    async fn recover(
        &mut self,
        socket: &mut WebSocket,
        channel: EventChannel,
        cursor: EventId,
    ) -> Result<(), End> {
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.catch_up(channel, cursor).await {
                Ok(outcome) => break Some(outcome),
                // The data connection may still be reconnecting.
                Err(error) if attempt < CATCH_UP_ATTEMPTS => {
                    tracing::debug!(%channel, %error, "catch-up retry");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    tracing::warn!(%channel, %error, "catch-up failed");
                    break None;
                }
            }
        };
        match outcome {
            Some(CatchUp::Events(events)) => {
                for event in events {
                    self.deliver(socket, event).await?;
                }
                Ok(())
            }
            Some(CatchUp::Resync(latest)) => {
                if let Some(current) = self.subscriptions.get_mut(&channel) {
                    *current = latest.max(*current);
                }
                self.send(socket, protocol::resync(&channel)).await
            }
            // Live events go on; what was missed cannot be told apart.
            None => self.send(socket, protocol::resync(&channel)).await,
        }
    }

    async fn on_tick(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        if self.last_seen.elapsed() >= self.shared.config.idle_timeout {
            return Err(End::Close(close_code::AWAY, "idle timeout"));
        }
        self.send(socket, Message::Ping(bytes::Bytes::new())).await
    }
}
