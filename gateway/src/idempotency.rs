//! Idempotency keys for REST writes: a `POST`, `PATCH` or `DELETE` with an
//! `Idempotency-Key` header is answered once; a repeat gets the first
//! answer again (with `Idempotent-Replayed: true`) instead of a second
//! change.
//!
//! - Keys are scoped per organisation and kept in Redis for 24 h, so every
//!   gateway instance shares them. The request is fingerprinted (method,
//!   path and query, the calling user, a SHA-256 of the body): the same key
//!   with another request — or from another user of the organisation, who
//!   must not be handed someone else's answer — is 409
//!   `IDEMPOTENCY_KEY_REUSED`.
//! - The first request claims the key with a pending marker (`SET NX`,
//!   expiring after the upstream deadline plus a margin, so a crashed
//!   instance never blocks a key for a day). A repeat while it runs is 409
//!   `CONFLICT` "still in progress" with `Retry-After: 1`: it neither waits
//!   nor calls the service a second time.
//! - Only answers that a retry would get again are stored: 2xx, and 4xx
//!   except 408 and 429. A 5xx, 408 or 429 releases the key so a retry can
//!   succeed; so does an answer whose body is over [`MAX_STORED_BODY`]
//!   (logged). Stored: the status, `content-type` and the body.
//! - Redis unreachable: the request goes through without idempotency and
//!   a warning is logged. Redis protects against duplicates; it must not
//!   take writes down with it.
//! - A key on a server-streaming route (chat messages) is not applied: a
//!   stream cannot be replayed.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use treven_mesh::trace::{self, Traced as _};
use treven_mesh::{ErrorCode, OrgId, ServiceError};

use crate::error::ApiError;
use crate::ratelimit::RateLimiter;

/// The request header that carries the key.
pub const KEY_HEADER: &str = "idempotency-key";
/// The response header set on a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The stable code of a key used again with another request (documented in
/// the OpenAPI error codes).
pub const KEY_REUSED: &str = treven_transcode::openapi::IDEMPOTENCY_KEY_REUSED;
/// How long a key and its answer are kept.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest key accepted, in characters (printable ASCII).
pub const MAX_KEY_LEN: usize = 255;
/// Largest answer body stored for replay; a larger answer is sent but not
/// stored (the key is released).
pub const MAX_STORED_BODY: usize = 1024 * 1024;
/// How long a pending marker outlives the upstream deadline.
const PENDING_MARGIN: Duration = Duration::from_secs(10);

/// Claims the key when it is free. KEYS: the key. ARGV: the pending record,
/// its TTL in ms. Returns nil when claimed, else the stored record.
const CLAIM: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"#;

/// Replaces our own pending marker. KEYS: the key. ARGV: our pending
/// record, the new record ('' deletes), its TTL in ms.
const SETTLE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"#;

/// What Redis holds for a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// The first request is running.
    Pending {
        fingerprint: String,
        /// Which claim this is (so only its owner settles it).
        claim: String,
    },
    /// The first request's answer.
    Done {
        fingerprint: String,
        status: u16,
        content_type: Option<String>,
        /// Base64.
        body: String,
    },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Record::Pending { fingerprint, .. } | Record::Done { fingerprint, .. } => fingerprint,
        }
    }
}

/// The `Idempotency-Key` of a request: `None` when absent, 400 naming the
/// header when it is not 1–255 printable ASCII characters.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(KEY_HEADER) else {
        return Ok(None);
    };
    let valid = value.to_str().ok().filter(|key| {
        (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
    });
    match valid {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ServiceError::invalid_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} printable ASCII characters"),
        )
        .into()),
    }
}

/// Whether `method` takes idempotency keys.
pub fn applies_to(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PATCH | Method::DELETE)
}

/// The fingerprint of a request: method, path and query, caller, body.
pub fn fingerprint(method: &Method, path_and_query: &str, user: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [
        method.as_str().as_bytes(),
        path_and_query.as_bytes(),
        user.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(Sha256::digest(body));
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether an answer with `status` is stored for replay: what a retry
/// would get again (2xx, 4xx except 408 and 429).
pub fn is_storable(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS)
}

/// The outcome of [`Idempotency::begin`].
pub enum Begin {
    /// The key is ours: call the service, then [`Claim::finish`].
    Proceed(Claim),
    /// The first answer, to send again.
    Replay(Response),
    /// Refused: the key is in use by another request, or still running.
    Refused(Response),
    /// Redis is unreachable: go on without idempotency.
    PassThrough,
}

/// The idempotency store (the rate limiter's Redis connection).
#[derive(Debug, Clone)]
pub struct Idempotency {
    limiter: RateLimiter,
    pending_ttl: Duration,
}

impl Idempotency {
    /// A store on the limiter's Redis; pending markers live `upstream
    /// timeout` plus a margin.
    pub fn new(limiter: RateLimiter, upstream_timeout: Duration) -> Self {
        Self {
            limiter,
            pending_ttl: upstream_timeout + PENDING_MARGIN,
        }
    }

    /// The Redis key of `key` in `org` (hashed: keys may hold any printable
    /// character).
    pub fn redis_key(org: OrgId, key: &str) -> String {
        format!("treven:idem:{org}:{}", hex(&Sha256::digest(key.as_bytes())))
    }

    /// Claims `key` for a request with `fingerprint`, or answers from what
    /// is stored.
    pub async fn begin(&self, org: OrgId, key: &str, fingerprint: String) -> Begin {
        let Some(mut redis) = self.limiter.connection() else {
            tracing::warn!("redis not reached, idempotency key not applied");
            return Begin::PassThrough;
        };
        let redis_key = Self::redis_key(org, key);
        let pending = Record::Pending {
            fingerprint: fingerprint.clone(),
            claim: uuid::Uuid::new_v4().to_string(),
        };
        let Ok(pending_json) = serde_json::to_string(&pending) else {
            return Begin::PassThrough;
        };
        let result: redis::RedisResult<Option<String>> = redis::Script::new(CLAIM)
            .key(&redis_key)
            .arg(&pending_json)
            .arg(self.pending_ttl.as_millis() as u64)
            .invoke_async(&mut redis)
            .traced(trace::with_org(
                trace::redis("gateway.idempotency_claim", "EVALSHA"),
                org,
            ))
            .await;
        let existing = match result {
            Ok(None) => {
                return Begin::Proceed(Claim {
                    redis,
                    redis_key,
                    pending: pending_json,
                    settled: false,
                });
            }
            Ok(Some(existing)) => existing,
            Err(error) => {
                tracing::warn!(%error, "idempotency store unreachable, key not applied");
                return Begin::PassThrough;
            }
        };
        let Ok(record) = serde_json::from_str::<Record>(&existing) else {
            tracing::warn!("unreadable idempotency record, key not applied");
            return Begin::PassThrough;
        };
        if record.fingerprint() != fingerprint {
            return Begin::Refused(key_reused());
        }
        match record {
            Record::Pending { .. } => Begin::Refused(in_progress()),
            Record::Done {
                status,
                content_type,
                body,
                ..
            } => Begin::Replay(replay(status, content_type, &body)),
        }
    }
}

/// 409 IDEMPOTENCY_KEY_REUSED, in the gateway's error shape.
fn key_reused() -> Response {
    let body = serde_json::json!({"error": {
        "code": KEY_REUSED,
        "message": "this Idempotency-Key was used with another request; use a new key for a new request",
        "details": {"fields": [{"field": "Idempotency-Key", "description": "already used with another method, path, body or user"}]},
    }});
    (StatusCode::CONFLICT, axum::Json(body)).into_response()
}

/// 409 CONFLICT: the first request with the key is still running.
fn in_progress() -> Response {
    let mut response = ApiError::new(
        ErrorCode::Conflict,
        "a request with this Idempotency-Key is still in progress; retry shortly",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn replay(status: u16, content_type: Option<String>, body: &str) -> Response {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(body) else {
        return ApiError::new(ErrorCode::Internal, "internal error").into_response();
    };
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        bytes,
    )
        .into_response();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// A key claimed by this request. Settled by [`Claim::finish`]; dropped
/// unsettled (the client went away mid-call), it releases the key in the
/// background.
pub struct Claim {
    redis: ConnectionManager,
    redis_key: String,
    pending: String,
    settled: bool,
}

impl Claim {
    /// Stores `response` for replay when [`is_storable`] and small enough,
    /// else releases the key; gives the response back (its body read into
    /// memory: unary answers are already).
    pub async fn finish(mut self, fingerprint: String, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, "answer body unreadable, idempotency key released");
                self.settle(String::new()).await;
                return ApiError::new(ErrorCode::Internal, "internal error").into_response();
            }
        };
        let record = if !is_storable(parts.status) {
            String::new()
        } else if bytes.len() > MAX_STORED_BODY {
            tracing::warn!(
                bytes = bytes.len(),
                max = MAX_STORED_BODY,
                "answer too large to store, idempotency key released"
            );
            String::new()
        } else {
            let record = Record::Done {
                fingerprint,
                status: parts.status.as_u16(),
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: base64::engine::general_purpose::STANDARD.encode(&bytes),
            };
            serde_json::to_string(&record).unwrap_or_default()
        };
        self.settle(record).await;
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }

    /// Replaces the pending marker with `record` ('' deletes it).
    async fn settle(&mut self, record: String) {
        self.settled = true;
        let result: redis::RedisResult<i64> = redis::Script::new(SETTLE)
            .key(&self.redis_key)
            .arg(&self.pending)
            .arg(&record)
            .arg(KEY_TTL.as_millis() as u64)
            .invoke_async(&mut self.redis)
            .traced(trace::redis("gateway.idempotency_settle", "EVALSHA"))
            .await;
        match result {
            Ok(1) => {}
            Ok(_) => tracing::warn!("idempotency marker expired before the answer, not stored"),
            Err(error) => tracing::warn!(%error, "idempotency answer not stored"),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (mut redis, key, pending) = (
            self.redis.clone(),
            std::mem::take(&mut self.redis_key),
            std::mem::take(&mut self.pending),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let released: redis::RedisResult<i64> = redis::Script::new(SETTLE)
                    .key(&key)
                    .arg(&pending)
                    .arg("")
                    .arg(0)
                    .invoke_async(&mut redis)
                    .await;
                if let Err(error) = released {
                    tracing::warn!(%error, "idempotency key of an abandoned request not released");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn keys_are_bounded_printable_ascii() {
        let mut headers = HeaderMap::new();
        assert!(key_of(&headers).unwrap().is_none());
        headers.insert(KEY_HEADER, HeaderValue::from_static("a b-1_~"));
        assert_eq!(key_of(&headers).unwrap().as_deref(), Some("a b-1_~"));
        for bad in ["x".repeat(256), "tab\there".to_owned()] {
            headers.insert(KEY_HEADER, HeaderValue::from_str(&bad).unwrap());
            let error = key_of(&headers).unwrap_err();
            assert_eq!(error.code(), ErrorCode::ValidationError);
        }
        headers.insert(KEY_HEADER, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(key_of(&headers).is_err());
    }

    #[test]
    fn only_answers_a_retry_would_get_again_are_stored() {
        for (status, stored) in [
            (200, true),
            (201, true),
            (400, true),
            (404, true),
            (409, true),
            (422, true),
            (408, false),
            (429, false),
            (500, false),
            (503, false),
        ] {
            assert_eq!(
                is_storable(StatusCode::from_u16(status).unwrap()),
                stored,
                "{status}"
            );
        }
    }

    #[test]
    fn the_fingerprint_covers_method_path_user_and_body() {
        let base = fingerprint(&Method::POST, "/api/partners", "u1", b"{}");
        assert_eq!(
            base,
            fingerprint(&Method::POST, "/api/partners", "u1", b"{}")
        );
        assert_ne!(
            base,
            fingerprint(&Method::PATCH, "/api/partners", "u1", b"{}")
        );
        assert_ne!(
            base,
            fingerprint(&Method::POST, "/api/partner", "u1", b"{}")
        );
        assert_ne!(
            base,
            fingerprint(&Method::POST, "/api/partners", "u2", b"{}")
        );
        assert_ne!(
            base,
            fingerprint(&Method::POST, "/api/partners", "u1", b"{ }")
        );
    }
}
