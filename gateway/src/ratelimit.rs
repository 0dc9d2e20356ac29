//! Rate limits in Redis, shared by every gateway instance: one token bucket
//! per organisation and one per user, both checked and taken atomically in a
//! single round trip (a Lua script using Redis's clock, so instances with
//! skewed clocks agree). A bucket holds up to its per-minute allowance and
//! refills continuously.
//!
//! Where both buckets are large (128 a minute or more), a round trip takes a
//! small lease of tokens at once — a sixty-fourth of the smaller burst, at
//! most [`MAX_LEASE`] — and this instance spends them locally for up to
//! [`LEASE_TTL`], so most calls pay no Redis round trip (#18: it was one
//! per call, on the latency of every request). Every token still comes out
//! of the shared buckets, so no caller gets more than its limit; what an
//! instance holds unspent is unavailable to the others for at most a
//! second, and is lost if the caller stops. Small limits (tests, a tight
//! partner allowance) lease one token: exact, as before.
//!
//! When Redis is down the gateway lets calls through and logs it: Redis
//! protects capacity, it must not take the API down with it. A limiter that
//! cannot reach Redis at start keeps trying in the background (logging
//! each failure, and its recovery), and `/readyz` says whether limits are
//! on, so fail-open is never silent for the life of a process.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use treven_mesh::OrgId;
use treven_mesh::trace::{self, Traced as _};

/// The outcome of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within both limits.
    Allowed,
    /// Over a limit; retry after this long.
    Limited(Duration),
}

/// Takes up to `want` tokens from the organisation's and the user's buckets
/// (as many as both hold, the same number from each), or none.
/// KEYS: org bucket, user bucket. ARGV: org rate/s, org burst, user rate/s,
/// user burst, want. Returns {taken, 0}, or {0, wait_ms} when not even one
/// token is there.
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
local want = math.max(1, tonumber(ARGV[5]) or 1)
local org = level(KEYS[1], org_rate, org_burst)
local user = level(KEYS[2], user_rate, user_burst)
if org < 1 then return {0, math.ceil((1 - org) / org_rate * 1000)} end
if user < 1 then return {0, math.ceil((1 - user) / user_rate * 1000)} end
local taken = math.min(want, math.floor(org), math.floor(user))
redis.call('HSET', KEYS[1], 'tokens', org - taken, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(org_burst / org_rate * 1000) + 1000)
redis.call('HSET', KEYS[2], 'tokens', user - taken, 'ts', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(user_burst / user_rate * 1000) + 1000)
return {taken, 0}
"#;

/// Most tokens one round trip leases.
pub const MAX_LEASE: u64 = 16;
/// How long leased tokens stay spendable on this instance.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// Callers whose leases one instance keeps (the least recent go first, with
/// their unspent tokens).
const LEASES_KEPT: usize = 10_000;

/// Tokens taken from a caller's buckets and not spent yet.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u64,
    taken_at: Instant,
}

/// A Redis-backed limiter.
#[derive(Clone)]
pub struct RateLimiter {
    /// Set once Redis has been reached (the manager then reconnects by
    /// itself); `None` while the first connection is still being retried.
    redis: Arc<RwLock<Option<ConnectionManager>>>,
    script: redis::Script,
    per_user_per_minute: u64,
    per_org_per_minute: u64,
    /// Tokens one round trip asks for (1 for small limits).
    lease: u64,
    leases: Arc<Mutex<lru::LruCache<(OrgId, String), Lease>>>,
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
    /// limiter that cannot reach Redis at start allows everything while a
    /// background task retries (every 2 s, backing off to 30 s) until it
    /// connects.
    pub async fn connect(url: &str, per_user_per_minute: u64, per_org_per_minute: u64) -> Self {
        let (per_user_per_minute, per_org_per_minute) =
            (per_user_per_minute.max(1), per_org_per_minute.max(1));
        let kept = NonZeroUsize::new(LEASES_KEPT).unwrap_or(NonZeroUsize::MIN);
        let limiter = Self {
            redis: Arc::new(RwLock::new(None)),
            script: redis::Script::new(TOKEN_BUCKETS),
            per_user_per_minute,
            per_org_per_minute,
            lease: (per_user_per_minute.min(per_org_per_minute) / 64).clamp(1, MAX_LEASE),
            leases: Arc::new(Mutex::new(lru::LruCache::new(kept))),
        };
        let client = match treven_mesh::events::redis_client(url) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "TREVEN_REDIS_URL is not usable, rate limits off");
                return limiter;
            }
        };
        if let Err(error) = limiter.try_connect(&client).await {
            let (limiter, peer) = (limiter.clone(), treven_mesh::events::redis_peer(url));
            tracing::warn!(%peer, %error, "redis unavailable at start, rate limits off until it is reached");
            tokio::spawn(async move {
                let mut wait = Duration::from_secs(2);
                loop {
                    tokio::time::sleep(wait).await;
                    match limiter.try_connect(&client).await {
                        Ok(()) => {
                            tracing::info!(%peer, "redis reached, rate limits on");
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%peer, %error, retry_secs = wait.as_secs(), "redis still unreachable, rate limits off");
                            wait = (wait * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            });
        }
        limiter
    }

    async fn try_connect(&self, client: &redis::Client) -> redis::RedisResult<()> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        match ConnectionManager::new_with_config(client.clone(), config).await {
            Ok(manager) => {
                if let Ok(mut redis) = self.redis.write() {
                    *redis = Some(manager);
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Whether limits are enforced (Redis has been reached).
    pub fn is_on(&self) -> bool {
        self.redis.read().map(|r| r.is_some()).unwrap_or(false)
    }

    /// The shared Redis connection, once reached (the idempotency store uses
    /// the same one); `None` while Redis has not been reached yet.
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.redis.read().ok().and_then(|r| r.clone())
    }

    /// Takes one call of `user` in `org` from both buckets: from this
    /// instance's lease when it holds one, else from Redis (leasing more when
    /// the buckets are large; see the module documentation).
    pub async fn check(&self, org: OrgId, user: &str) -> Verdict {
        let redis = self.redis.read().ok().and_then(|r| r.clone());
        let Some(mut redis) = redis else {
            return Verdict::Allowed;
        };
        if self.spend_leased(org, user) {
            return Verdict::Allowed;
        }
        let result: redis::RedisResult<(u64, i64)> = self
            .script
            .key(format!("treven:rl:org:{org}"))
            .key(format!("treven:rl:user:{org}:{user}"))
            .arg(self.per_org_per_minute as f64 / 60.0)
            .arg(self.per_org_per_minute)
            .arg(self.per_user_per_minute as f64 / 60.0)
            .arg(self.per_user_per_minute)
            .arg(self.lease)
            .invoke_async(&mut redis)
            .traced(trace::with_org(
                trace::redis("gateway.rate_limit", "EVALSHA"),
                org,
            ))
            .await;
        match result {
            Ok((0, wait_ms)) => {
                crate::metrics::rate_limit_rejections().add(1, &[]);
                Verdict::Limited(Duration::from_millis(wait_ms.max(1) as u64))
            }
            Ok((taken, _)) => {
                // One for this call; the rest for the caller's next ones.
                self.keep_leased(org, user, taken - 1);
                Verdict::Allowed
            }
            Err(error) => {
                tracing::warn!(%error, "rate limit check failed, allowing the call");
                Verdict::Allowed
            }
        }
    }

    /// Spends one leased token of the caller's, if a fresh one is held
    /// (never with one-token leases: nothing is kept then).
    fn spend_leased(&self, org: OrgId, user: &str) -> bool {
        if self.lease == 1 {
            return false;
        }
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        match leases.get_mut(&(org, user.to_owned())) {
            Some(lease) if lease.tokens > 0 && lease.taken_at.elapsed() < LEASE_TTL => {
                lease.tokens -= 1;
                true
            }
            _ => false,
        }
    }

    /// Keeps `tokens` more for the caller (added to a fresh lease: two
    /// calls that both went to Redis keep both their leases).
    fn keep_leased(&self, org: OrgId, user: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let key = (org, user.to_owned());
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match leases.get_mut(&key) {
            Some(lease) if lease.taken_at.elapsed() < LEASE_TTL => {
                lease.tokens += tokens;
                lease.taken_at = now;
            }
            _ => {
                leases.put(
                    key,
                    Lease {
                        tokens,
                        taken_at: now,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Rate limits are not silently off for the life of a process: a
    /// gateway started before Redis enforces them once Redis comes up.
    #[tokio::test]
    async fn a_limiter_started_before_redis_enforces_limits_once_redis_is_up() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let limiter = RateLimiter::connect(&format!("redis://127.0.0.1:{port}"), 1, 60).await;
        assert!(!limiter.is_on(), "nothing listens yet");
        let org: OrgId = uuid::Uuid::new_v4().to_string().parse().expect("org id");
        assert_eq!(limiter.check(org, "u").await, Verdict::Allowed, "fail open");

        let mut redis = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let started = std::time::Instant::now();
        while !limiter.is_on() && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let on = limiter.is_on();
        let first = limiter.check(org, "u").await;
        let second = limiter.check(org, "u").await;
        let _ = redis.kill();
        let _ = redis.wait();
        assert!(on, "the background task reached redis");
        assert_eq!(first, Verdict::Allowed);
        assert!(
            matches!(second, Verdict::Limited(_)),
            "one call per minute per user is enforced: {second:?}"
        );
    }

    fn test_redis_url() -> String {
        std::env::var("TREVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    async fn user_tokens(org: OrgId, user: &str) -> f64 {
        let client = redis::Client::open(test_redis_url()).unwrap();
        let mut redis = client.get_multiplexed_async_connection().await.unwrap();
        let tokens: String = redis::cmd("HGET")
            .arg(format!("treven:rl:user:{org}:{user}"))
            .arg("tokens")
            .query_async(&mut redis)
            .await
            .unwrap();
        tokens.parse().unwrap()
    }

    /// A large allowance is taken from Redis a lease at a time, so most calls
    /// make no round trip, and still no caller gets more than its bucket.
    #[tokio::test]
    async fn large_limits_are_leased_and_never_exceeded() {
        let limiter = RateLimiter::connect(&test_redis_url(), 1_280, 12_800).await;
        assert!(limiter.is_on());
        assert_eq!(limiter.lease, MAX_LEASE);
        let org: OrgId = uuid::Uuid::new_v4().to_string().parse().unwrap();

        // The first call leases 16 tokens; the next 15 spend them here.
        assert_eq!(limiter.check(org, "u").await, Verdict::Allowed);
        let after_first = user_tokens(org, "u").await;
        assert!((1_263.0..1_265.0).contains(&after_first), "{after_first}");
        for _ in 0..15 {
            assert_eq!(limiter.check(org, "u").await, Verdict::Allowed);
        }
        assert_eq!(
            user_tokens(org, "u").await,
            after_first,
            "Redis was not asked"
        );
        // The 17th call takes the next lease.
        assert_eq!(limiter.check(org, "u").await, Verdict::Allowed);
        let after_second = user_tokens(org, "u").await;
        assert!(after_second < after_first - 15.0, "{after_second}");

        // Every token of the bucket is spent, none more.
        let started = Instant::now();
        let mut allowed = 17_u32;
        while limiter.check(org, "u").await == Verdict::Allowed {
            allowed += 1;
            assert!(allowed < 5_000, "the bucket never ran out");
        }
        let refilled = started.elapsed().as_secs_f64() * 1_280.0 / 60.0;
        assert!(f64::from(allowed) >= 1_280.0, "{allowed}");
        assert!(
            f64::from(allowed) <= 1_280.0 + refilled + 1.0,
            "{allowed} calls against a bucket of 1,280 (+{refilled:.1} refilled)"
        );
        // Another user of the organisation has a bucket of its own.
        assert_eq!(limiter.check(org, "v").await, Verdict::Allowed);
    }

    /// Small limits lease one token a call: exact, as without leases.
    #[tokio::test]
    async fn small_limits_take_one_token_a_call() {
        let limiter = RateLimiter::connect(&test_redis_url(), 5, 600).await;
        assert_eq!(limiter.lease, 1);
        let org: OrgId = uuid::Uuid::new_v4().to_string().parse().unwrap();
        for left in [4.0, 3.0] {
            assert_eq!(limiter.check(org, "u").await, Verdict::Allowed);
            let tokens = user_tokens(org, "u").await;
            assert!((left..left + 0.1).contains(&tokens), "{tokens}");
        }
    }
}
