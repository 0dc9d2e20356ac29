//! Rate limits in Redis, shared by every gateway instance: one token bucket
//! per organisation and one per user, both checked and taken atomically in a
//! single round trip (a Lua script using Redis's clock, so instances with
//! skewed clocks agree). A bucket holds up to its per-minute allowance and
//! refills continuously.
//!
//! When Redis is down the gateway lets calls through and logs it: Redis
//! protects capacity, it must not take the API down with it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use treven_mesh::OrgId;

/// The outcome of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within both limits.
    Allowed,
    /// Over a limit; retry after this long.
    Limited(Duration),
}

/// Takes one token from the organisation's and the user's buckets, or none.
/// KEYS: org bucket, user bucket. ARGV: org rate/s, org burst, user rate/s,
/// user burst. Returns {1, 0} when allowed, {0, wait_ms} when not.
const TOKEN_BUCKETS: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local function level(key, rate, burst)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then return burst end
  return math.min(burst, tokens + (now - ts) / 1000 * rate)
end
local org_rate, org_burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local user_rate, user_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local org = level(KEYS[1], org_rate, org_burst)
local user = level(KEYS[2], user_rate, user_burst)
if org < 1 then return {0, math.ceil((1 - org) / org_rate * 1000)} end
if user < 1 then return {0, math.ceil((1 - user) / user_rate * 1000)} end
redis.call('HSET', KEYS[1], 'tokens', org - 1, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(org_burst / org_rate * 1000) + 1000)
redis.call('HSET', KEYS[2], 'tokens', user - 1, 'ts', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(user_burst / user_rate * 1000) + 1000)
return {1, 0}
"#;

/// A Redis-backed limiter.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Option<ConnectionManager>,
    script: redis::Script,
    per_user_per_minute: u64,
    per_org_per_minute: u64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_user_per_minute", &self.per_user_per_minute)
            .field("per_org_per_minute", &self.per_org_per_minute)
            .finish()
    }
}

impl RateLimiter {
    /// Connects to `url` (the connection manager reconnects by itself). A
    /// limiter that cannot reach Redis at start allows everything.
    pub async fn connect(url: &str, per_user_per_minute: u64, per_org_per_minute: u64) -> Self {
        let redis = match redis::Client::open(url) {
            Ok(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_millis(500)));
                match ConnectionManager::new_with_config(client, config).await {
                    Ok(manager) => Some(manager),
                    Err(error) => {
                        tracing::warn!(%error, "redis unavailable at start, rate limits off");
                        None
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "invalid redis url, rate limits off");
                None
            }
        };
        Self {
            redis,
            script: redis::Script::new(TOKEN_BUCKETS),
            per_user_per_minute: per_user_per_minute.max(1),
            per_org_per_minute: per_org_per_minute.max(1),
        }
    }

    /// Takes one call of `user` in `org` from both buckets.
    pub async fn check(&self, org: OrgId, user: &str) -> Verdict {
        let Some(redis) = &self.redis else {
            return Verdict::Allowed;
        };
        let result: redis::RedisResult<(i64, i64)> = self
            .script
            .key(format!("treven:rl:org:{org}"))
            .key(format!("treven:rl:user:{org}:{user}"))
            .arg(self.per_org_per_minute as f64 / 60.0)
            .arg(self.per_org_per_minute)
            .arg(self.per_user_per_minute as f64 / 60.0)
            .arg(self.per_user_per_minute)
            .invoke_async(&mut redis.clone())
            .await;
        match result {
            Ok((1, _)) => Verdict::Allowed,
            Ok((_, wait_ms)) => Verdict::Limited(Duration::from_millis(wait_ms.max(1) as u64)),
            Err(error) => {
                tracing::warn!(%error, "rate limit check failed, allowing the call");
                Verdict::Allowed
            }
        }
    }
}
