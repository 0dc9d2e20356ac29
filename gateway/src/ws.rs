//! The WebSocket listener (`:8081`, `GET /ws`): live events of reports,
//! conversations and agent runs, and streamed chat replies.
//!
//! - **Authentication** is the REST one ([`Gateway::caller`]): the Cognito
//!   ID token is verified, the role looked up in tenants, the rate limit
//!   counted; anything wrong is answered with HTTP 401/403/429/503 *before*
//!   the upgrade. Browsers cannot set headers on a WebSocket, so the token
//!   comes in the `Sec-WebSocket-Protocol` offer, and only there
//!   (`new WebSocket(url, ["treven.v1", "bearer." + idToken])`, answered
//!   with `treven.v1` — the token is never echoed). A URL carrying a token
//!   (`?token=`, `?access_token=`) is refused with 400 whatever else the
//!   request holds: URLs end up in load balancer and CDN access logs, and
//!   this server never logs one. Identity headers are never read.
//! - **Membership** is checked again every `TREVEN_GATEWAY_WS_RECHECK_SECS`
//!   ([`recheck`]): a user removed from the organisation is told and the
//!   connection closed (1008, `access revoked`); a user whose role changed
//!   keeps only the subscriptions the new role is allowed.
//! - **Messages** are described in [`protocol`].
//! - **Channels** are always resolved inside the caller's organisation (the
//!   registry and the Redis names are keyed by it), and a subscription is
//!   made only after the owning service confirms the resource
//!   ([`authorize`]).
//! - **Fan-out**: one Redis `PSUBSCRIBE` per instance feeds a local
//!   registry ([`hub`]); every instance sees every event, so a client can
//!   reconnect to any instance and resume from the last event id it saw.
//! - **Limits**: heartbeats and an idle timeout, a bounded queue per
//!   connection (a slow consumer is told and dropped), maximum message and
//!   frame sizes, subscriptions per connection and connections per instance,
//!   small read and write buffers ([`crate::config::WsConfig`]).
//! - **Redis down**: connected clients get an `UNAVAILABLE` error event, the
//!   bridge reconnects with backoff, and once it is back each subscription
//!   is caught up from the stream (or told to `resync`).

pub mod authorize;
mod chat;
mod connection;
pub mod hub;
pub mod protocol;
mod recheck;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use treven_mesh::events::EventPublisher;
use treven_mesh::server::ShutdownPolicy;
use treven_mesh::{CancellationToken, ErrorCode};
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

use crate::caller::request_id;
use crate::config::WsConfig;
use crate::error::ApiError;
use crate::state::Gateway;
use authorize::{ChannelAuthorizer, GrpcChannelAuthorizer};
use hub::Hub;

/// The subprotocol the server speaks (and echoes when offered).
pub const PROTOCOL: &str = "treven.v1";
/// Prefix of the subprotocol entry that carries the token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";
/// Bytes read from the socket at a time. Small: most connections sit idle
/// with nothing but pings to read, and this buffer is held by each of them
/// (8 KiB measured 40k idle connections per GiB of RSS; larger frames simply
/// take several reads).
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Bytes buffered before a write reaches the socket: none, since every frame
/// is flushed at once anyway and an idle connection then holds no buffer.
const WRITE_BUFFER_BYTES: usize = 0;

/// What every connection of one listener shares.
pub(crate) struct Shared {
    gateway: Gateway,
    config: WsConfig,
    hub: Arc<Hub>,
    events: EventPublisher,
    authorizer: Arc<dyn ChannelAuthorizer>,
    agents: AgentsServiceClient<Channel>,
    /// Where memberships are checked again.
    tenants: TenantsServiceClient<Channel>,
    /// Cancelled when connections must close (after the drain delay).
    closing: CancellationToken,
    permits: Arc<Semaphore>,
}

/// The WebSocket server of one gateway instance.
pub struct WsServer {
    gateway: Gateway,
    hub: Arc<Hub>,
    events: EventPublisher,
    redis: redis::Client,
    authorizer: Arc<dyn ChannelAuthorizer>,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServer")
            .field("hub", &self.hub)
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

impl WsServer {
    /// A server for `gateway`: Redis from `TREVEN_REDIS_URL` (connected
    /// lazily, so it starts while Redis is down), subscriptions checked with
    /// the owning services over gRPC.
    pub fn new(gateway: Gateway) -> anyhow::Result<Self> {
        let url = gateway.config.redis_url.clone();
        let authorizer = Arc::new(GrpcChannelAuthorizer::from_gateway(&gateway)?);
        Ok(Self {
            events: EventPublisher::connect_lazy(&url)?,
            redis: treven_mesh::events::redis_client(&url)?,
            hub: Arc::new(Hub::default()),
            authorizer,
            gateway,
        })
    }

    /// Checks subscriptions with `authorizer` instead.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn ChannelAuthorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// This instance's registry (connections, bridge state).
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }

    fn shared(self) -> anyhow::Result<Arc<Shared>> {
        let agents = self
            .gateway
            .upstreams
            .get("treven.agents.v1.AgentsService")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no agents channel"))?;
        let tenants = self
            .gateway
            .upstreams
            .get("treven.tenants.v1.TenantsService")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no tenants channel"))?;
        let config = self.gateway.config.ws;
        Ok(Arc::new(Shared {
            agents: AgentsServiceClient::new(agents),
            tenants: TenantsServiceClient::new(tenants),
            permits: Arc::new(Semaphore::new(config.max_connections)),
            closing: CancellationToken::new(),
            config,
            hub: self.hub,
            events: self.events,
            authorizer: self.authorizer,
            gateway: self.gateway,
        }))
    }

    /// Serves `/ws` (and `/healthz`, `/readyz`) on `listener` until
    /// `shutdown`; then stops accepting after `drain_delay`, asks every
    /// connection to close (1012, clients reconnect elsewhere) and waits up
    /// to `grace` for them.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        policy: ShutdownPolicy,
    ) -> anyhow::Result<()> {
        let address = listener.local_addr()?;
        let redis = self.redis.clone();
        let shared = self.shared()?;
        let bridge_stop = CancellationToken::new();
        let bridge = tokio::spawn(hub::run_bridge(
            Arc::clone(&shared.hub),
            redis,
            bridge_stop.clone(),
        ));
        let _stop_bridge = bridge_stop.drop_guard();
        tracing::info!(%address, "websocket serving");
        let draining = {
            let closing = shared.closing.clone();
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(policy.drain_delay).await;
                closing.cancel();
            }
        };
        let app = router(Arc::clone(&shared)).into_make_service();
        axum::serve(listener, app)
            .with_graceful_shutdown(draining)
            .await?;
        let everyone = u32::try_from(shared.config.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(policy.grace, shared.permits.acquire_many(everyone))
            .await
            .is_err()
        {
            tracing::warn!("grace period over, dropping websocket connections still open");
        }
        bridge.abort();
        Ok(())
    }
}

/// Serves the WebSocket listener of `gateway` on `listener` until
/// `shutdown` (see [`WsServer::serve`]), checking subscriptions with the
/// owning services.
pub async fn serve_ws(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: CancellationToken,
    policy: ShutdownPolicy,
) -> anyhow::Result<()> {
    WsServer::new(gateway)?
        .serve(listener, shutdown, policy)
        .await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .with_state(shared)
}

/// Ready while the Redis subscription is up (without it no event arrives).
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.hub.bridge_connected() {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "waiting_for": "redis"})),
        )
            .into_response()
    }
}

/// The bearer token of an upgrade request: the `bearer.<token>` entry of
/// its `Sec-WebSocket-Protocol` offer, the only place one is read from.
fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|entry| entry.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// Query parameters that would carry a token in the URL.
const TOKEN_PARAMETERS: &[&str] = &["token", "access_token", "id_token"];

/// Whether the URL's query names a token parameter (with or without a
/// value): such a request is refused, never logged.
fn token_in_url(uri: &Uri) -> bool {
    uri.query().is_some_and(|query| {
        query.split('&').any(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            TOKEN_PARAMETERS
                .iter()
                .any(|parameter| name.eq_ignore_ascii_case(parameter))
        })
    })
}

/// `GET /ws`: authenticate, then upgrade.
async fn upgrade(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let id = request_id(&headers);
    let outcome = if token_in_url(&uri) {
        // Only the fact is logged: the URL holds the token.
        tracing::info!(request_id = %id, "websocket upgrade with a token in the url refused");
        Err(ApiError::new(
            ErrorCode::ValidationError,
            "tokens in the URL are refused: send it in Sec-WebSocket-Protocol (treven.v1, bearer.<token>)",
        ))
    } else {
        authenticate_and_upgrade(&shared, &headers, &id, upgrade).await
    };
    let mut response = outcome.unwrap_or_else(IntoResponse::into_response);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn authenticate_and_upgrade(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    id: &str,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = token(headers).ok_or_else(ApiError::unauthorized)?;
    let authorization =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ApiError::unauthorized())?;
    let mut only_token = HeaderMap::new();
    only_token.insert(header::AUTHORIZATION, authorization);
    let caller = shared.gateway.caller(&only_token, id.to_owned()).await?;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let permit = Arc::clone(&shared.permits)
        .try_acquire_owned()
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "too many connections, retry later"))?;
    let size = shared.config.max_message_bytes;
    let shared = Arc::clone(shared);
    Ok(upgrade
        .protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(size)
        .max_frame_size(size)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            connection::run(shared, socket, caller.identity, caller.role).await;
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_only_from_the_protocol_offer() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("treven.v1, bearer.aaa.bbb.ccc"),
        );
        assert_eq!(token(&headers).as_deref(), Some("aaa.bbb.ccc"));
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer hdr"),
        );
        assert_eq!(token(&headers), None, "no Authorization header");
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("treven.v1, bearer."),
        );
        assert_eq!(token(&headers), None);
    }

    #[test]
    fn a_token_parameter_in_the_url_is_recognised() {
        for refused in [
            "/ws?token=abc",
            "/ws?x=1&TOKEN=abc",
            "/ws?access_token=abc",
            "/ws?id_token",
            "/ws?token=",
        ] {
            let uri: Uri = refused.parse().unwrap_or_default();
            assert!(token_in_url(&uri), "{refused}");
        }
        for allowed in ["/ws", "/ws?", "/ws?tokens=1", "/ws?x=token"] {
            let uri: Uri = allowed.parse().unwrap_or_default();
            assert!(!token_in_url(&uri), "{allowed}");
        }
    }
}
