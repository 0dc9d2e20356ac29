//! Per-caller rate limits in Redis, shared by every gateway instance: a
//! fixed one-minute window per (organisation, user), counted with one
//! pipelined `INCR` + `EXPIRE`. When Redis is down the gateway lets calls
//! through (and logs it): Redis protects capacity, it must not take the API
//! down with it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use treven_mesh::OrgId;

/// The outcome of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Allowed,
    /// Over the limit; retry after this long.
    Limited(Duration),
}

/// A Redis-backed limiter.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Option<ConnectionManager>,
    per_minute: u64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

impl RateLimiter {
    /// Connects to `url` (the connection manager reconnects by itself). A
    /// limiter without Redis allows everything.
    pub async fn connect(url: &str, per_minute: u64) -> Self {
        let redis = match redis::Client::open(url) {
            Ok(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_millis(500)));
                match ConnectionManager::new_with_config(client, config).await {
                    Ok(manager) => Some(manager),
                    Err(error) => {
                        tracing::warn!(%error, "redis unavailable at start, rate limits off until it is back");
                        None
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "invalid redis url, rate limits off");
                None
            }
        };
        Self { redis, per_minute }
    }

    /// Counts one call of `user` in `org`.
    pub async fn check(&self, org: OrgId, user: &str) -> Verdict {
        let Some(redis) = &self.redis else {
            return Verdict::Allowed;
        };
        let now = chrono::Utc::now().timestamp();
        let window = now / 60;
        let key = format!("treven:rl:{org}:{user}:{window}");
        let result: redis::RedisResult<(u64,)> = redis::pipe()
            .atomic()
            .incr(&key, 1u64)
            .expire(&key, 120)
            .ignore()
            .query_async(&mut redis.clone())
            .await;
        match result {
            Ok((count,)) if count > self.per_minute => {
                Verdict::Limited(Duration::from_secs((60 - now % 60) as u64))
            }
            Ok(_) => Verdict::Allowed,
            Err(error) => {
                tracing::warn!(%error, "rate limit check failed, allowing the call");
                Verdict::Allowed
            }
        }
    }
}
