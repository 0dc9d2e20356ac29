//! Configuration of the reports service.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use treven_mesh::client::{ChannelOptions, service_url};
use treven_mesh::config::{ConfigError, Env, Environment};
use treven_mesh::server::ShutdownPolicy;

/// The port reports listens on.
pub const DEFAULT_PORT: u16 = 50053;
/// The Postgres schema holding the reports tables and migration history.
pub const SCHEMA: &str = "reports";

pub use treven_mesh::postgres::PoolOptions;

/// The generation workers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// `TREVEN_REPORTS_WORKERS` (default 2; 0 disables workers in this process).
    pub count: usize,
    /// `TREVEN_REPORTS_POLL_MILLIS` (default 1000): idle wait between claims.
    pub poll_interval: Duration,
    /// `TREVEN_REPORTS_HEARTBEAT_MILLIS` (default 5000).
    pub heartbeat_interval: Duration,
    /// `TREVEN_REPORTS_LEASE_MILLIS` (default 30000): a job whose worker has
    /// not heartbeaten for this long is taken by another worker. At least
    /// twice the heartbeat interval.
    pub lease_timeout: Duration,
    /// `TREVEN_REPORTS_MAX_ATTEMPTS` (default 3): then the report fails.
    pub max_attempts: i32,
    /// `TREVEN_REPORTS_BACKOFF_MILLIS` (default 5000): the wait before the
    /// second attempt, doubled for each later one.
    pub backoff_base: Duration,
    /// `TREVEN_REPORTS_BACKOFF_MAX_MILLIS` (default 300000).
    pub backoff_max: Duration,
    /// `TREVEN_REPORTS_GENERATION_TIMEOUT_SECS` (default 300): the longest
    /// one attempt may stream from the agents service.
    pub generation_timeout: Duration,
}

impl WorkerOptions {
    /// The wait before retrying after `attempts` failed attempts.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(16);
        self.backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max)
    }
}

/// The outbox relay ([`crate::outbox::Relay`]).
#[derive(Debug, Clone, Copy)]
pub struct OutboxOptions {
    /// `TREVEN_REPORTS_OUTBOX_SWEEP_MILLIS` (default 5000): how often the
    /// relay looks for pending events besides being woken by each commit
    /// (what makes it catch up after an outage or a restart).
    pub sweep_interval: Duration,
    /// `TREVEN_REPORTS_OUTBOX_BACKOFF_MILLIS` (default 1000): the wait
    /// after a failed delivery, doubled for each later failure of the event.
    pub backoff_base: Duration,
    /// `TREVEN_REPORTS_OUTBOX_BACKOFF_MAX_MILLIS` (default 60000).
    pub backoff_max: Duration,
    /// How long a claimed batch is not claimed again (a relay that dies
    /// mid-batch): longer than a batch takes to deliver.
    pub lease: Duration,
    /// Events claimed at once.
    pub batch: u32,
}

impl OutboxOptions {
    /// The wait before the next attempt of an event that failed `failures`
    /// times.
    pub fn backoff(&self, failures: i32) -> Duration {
        let exponent = u32::try_from(failures.saturating_sub(1))
            .unwrap_or(0)
            .min(16);
        self.backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max)
    }
}

/// Input limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `TREVEN_REPORTS_MAX_FIELD_CHARS` (default 20000): longest text field.
    pub max_field_chars: usize,
    /// `TREVEN_REPORTS_MAX_ITEMS` (default 50): most items in a list field
    /// (judgements, red flags, requirements, cards, a section's citations).
    pub max_items: usize,
    /// `TREVEN_REPORTS_MAX_DOCUMENTS` (default 50): most documents named on create.
    pub max_documents: usize,
}

/// The variable naming the reports database (and its login role).
pub const DATABASE_URL: &str = "TREVEN_REPORTS_DATABASE_URL";

/// The login role of the reports service in the dev stack and the CDK app.
pub const LOGIN_ROLE: &str = "treven_reports_svc";

/// The NOLOGIN roles the reports login role is a member of: `treven_app`
/// (inherited: one organisation at a time) and `treven_worker` (entered
/// with SET LOCAL ROLE by the job claim, heartbeat and release, and an
/// outbox relay).
pub const LOGIN_ROLE_MEMBER_OF: [&str; 2] = ["treven_app", "treven_worker"];

/// Configuration of the reports service.
#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// `TREVEN_REPORTS_ADDR` (default port 50053; loopback locally, every
    /// interface in AWS).
    pub listen: SocketAddr,
    /// `TREVEN_REPORTS_DATABASE_URL` (+ `TREVEN_REPORTS_DATABASE_PASSWORD`
    /// or `TREVEN_DATABASE_PASSWORD`): the service's login role; the
    /// service works in the schema `reports` of that database.
    pub database: PgConnectOptions,

    /// `TREVEN_REPORTS_DB_MAX_CONNECTIONS` (default 10),
    /// `TREVEN_DB_ACQUIRE_TIMEOUT_SECS` (default 3).
    pub pool: PoolOptions,
    /// `TREVEN_TENANTS_URL` (default `http://127.0.0.1:50051`).
    pub tenants_url: String,
    /// `TREVEN_DOCUMENTS_URL` (default `http://127.0.0.1:50052`).
    pub documents_url: String,
    /// `TREVEN_AGENTS_URL` (default `http://127.0.0.1:50054`).
    pub agents_url: String,
    /// `TREVEN_REDIS_URL` (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// `TREVEN_REPORTS_CALL_TIMEOUT_SECS` (default 10): deadline of unary
    /// calls to tenants, documents and agents.
    pub calls: ChannelOptions,
    /// The generation workers.
    pub workers: WorkerOptions,
    /// The outbox relay.
    pub outbox: OutboxOptions,
    /// Input limits.
    pub limits: Limits,
    /// Drain and grace periods.
    pub shutdown: ShutdownPolicy,
    /// `TREVEN_REPORTS_LINK_KEY` (optional, at least 32 characters; a
    /// Secrets Manager secret in AWS): the key partner links are signed
    /// with. Unset: a key derived from the reports mesh signing key (links
    /// then stop working when that key rotates).
    pub link_key: Option<crate::links::LinkKey>,
}

fn millis_or(
    env: &Env,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let value: u64 = env.parse_or(name, default)?;
    if !range.contains(&value) {
        return Err(env.error(
            name,
            format!(
                "must be between {} and {} milliseconds, got {value}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(Duration::from_millis(value))
}

fn bounded<T>(
    env: &Env,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let value: T = env.parse_or(name, default)?;
    if !range.contains(&value) {
        return Err(env.error(
            name,
            format!(
                "must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

impl ReportsConfig {
    /// Reads and validates the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        let heartbeat_interval =
            millis_or(env, "TREVEN_REPORTS_HEARTBEAT_MILLIS", 5_000, 50..=600_000)?;
        let lease_timeout = millis_or(env, "TREVEN_REPORTS_LEASE_MILLIS", 30_000, 100..=3_600_000)?;
        if lease_timeout < heartbeat_interval * 2 {
            return Err(env.error(
                "TREVEN_REPORTS_LEASE_MILLIS",
                "must be at least twice TREVEN_REPORTS_HEARTBEAT_MILLIS",
            ));
        }
        let backoff_base = millis_or(env, "TREVEN_REPORTS_BACKOFF_MILLIS", 5_000, 0..=3_600_000)?;
        let backoff_max = millis_or(
            env,
            "TREVEN_REPORTS_BACKOFF_MAX_MILLIS",
            300_000,
            0..=86_400_000,
        )?;
        let calls = ChannelOptions {
            connect_timeout: Duration::from_secs(3),
            call_timeout: env.seconds_or("TREVEN_REPORTS_CALL_TIMEOUT_SECS", 10, 1..=120)?,
        };
        let outbox = OutboxOptions {
            sweep_interval: millis_or(
                env,
                "TREVEN_REPORTS_OUTBOX_SWEEP_MILLIS",
                5_000,
                10..=600_000,
            )?,
            backoff_base: millis_or(
                env,
                "TREVEN_REPORTS_OUTBOX_BACKOFF_MILLIS",
                1_000,
                0..=3_600_000,
            )?,
            backoff_max: millis_or(
                env,
                "TREVEN_REPORTS_OUTBOX_BACKOFF_MAX_MILLIS",
                60_000,
                0..=86_400_000,
            )?,
            // A batch is delivered one event at a time and stops at the
            // first UNAVAILABLE: a few call timeouts at most.
            lease: (calls.call_timeout + calls.connect_timeout) * 6,
            batch: 20,
        };
        Ok(Self {
            listen: env.socket_addr_or(
                "TREVEN_REPORTS_ADDR",
                environment.default_listen(DEFAULT_PORT),
            )?,
            database: database_options(env, DATABASE_URL)?.application_name("treven-reports"),
            pool: PoolOptions {
                max_connections: bounded(env, "TREVEN_REPORTS_DB_MAX_CONNECTIONS", 10u32, 1..=200)?,
                acquire_timeout: env.seconds_or("TREVEN_DB_ACQUIRE_TIMEOUT_SECS", 3, 1..=60)?,
            },
            tenants_url: service_url(env, "TREVEN_TENANTS_URL", &local(50051))?,
            documents_url: service_url(env, "TREVEN_DOCUMENTS_URL", &local(50052))?,
            agents_url: service_url(env, "TREVEN_AGENTS_URL", &local(50054))?,
            redis_url: treven_mesh::events::redis_url(env)?,
            calls,
            workers: WorkerOptions {
                count: bounded(env, "TREVEN_REPORTS_WORKERS", 2usize, 0..=64)?,
                poll_interval: millis_or(env, "TREVEN_REPORTS_POLL_MILLIS", 1_000, 10..=60_000)?,
                heartbeat_interval,
                lease_timeout,
                max_attempts: bounded(env, "TREVEN_REPORTS_MAX_ATTEMPTS", 3i32, 1..=20)?,
                backoff_base,
                backoff_max,
                generation_timeout: env.seconds_or(
                    "TREVEN_REPORTS_GENERATION_TIMEOUT_SECS",
                    300,
                    1..=3_600,
                )?,
            },
            outbox,
            limits: Limits {
                max_field_chars: bounded(
                    env,
                    "TREVEN_REPORTS_MAX_FIELD_CHARS",
                    20_000usize,
                    100..=1_000_000,
                )?,
                max_items: bounded(env, "TREVEN_REPORTS_MAX_ITEMS", 50usize, 10..=1_000)?,
                max_documents: bounded(env, "TREVEN_REPORTS_MAX_DOCUMENTS", 50usize, 1..=1_000)?,
            },
            shutdown: ShutdownPolicy::from_env(env)?,
            link_key: env
                .get("TREVEN_REPORTS_LINK_KEY")
                .map(|secret| {
                    crate::links::LinkKey::from_secret(&secret)
                        .map_err(|problem| env.error("TREVEN_REPORTS_LINK_KEY", problem))
                })
                .transpose()?,
        })
    }
}

/// What `treven migrate` reads: the reports database as its owner
/// (`TREVEN_MIGRATE_DATABASE_USER`, `TREVEN_MIGRATE_DATABASE_PASSWORD`) and
/// the service's login role (the user of `TREVEN_REPORTS_DATABASE_URL`,
/// whose password is `TREVEN_REPORTS_DATABASE_PASSWORD` or
/// `TREVEN_DATABASE_PASSWORD`).
pub fn owner_config(env: &Env) -> Result<treven_mesh::postgres::OwnerLogin, ConfigError> {
    let database = database_options(env, DATABASE_URL)?.application_name("treven-migrate");
    treven_mesh::postgres::owner_options(env, DATABASE_URL, &database)
}

/// Postgres connection options from a URL variable (TLS, password: see
/// [`treven_mesh::postgres::database_options`]) with `search_path` set to
/// the `reports` schema.
pub fn database_options(env: &Env, variable: &str) -> Result<PgConnectOptions, ConfigError> {
    Ok(treven_mesh::postgres::database_options(env, variable)?.options([("search_path", SCHEMA)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values_name_the_variable() {
        let env = Env::from_pairs([(
            "TREVEN_REPORTS_DATABASE_URL",
            "postgres://u@localhost/treven",
        )]);
        let config = ReportsConfig::from_env(&env).expect("config");
        assert_eq!(config.listen.port(), DEFAULT_PORT);
        assert_eq!(config.workers.count, 2);
        assert_eq!(config.workers.max_attempts, 3);
        assert_eq!(config.workers.backoff(1), Duration::from_secs(5));
        assert_eq!(config.workers.backoff(3), Duration::from_secs(20));
        assert_eq!(config.workers.backoff(30), Duration::from_secs(300));
        assert_eq!(config.outbox.sweep_interval, Duration::from_secs(5));
        assert_eq!(config.outbox.backoff(1), Duration::from_secs(1));
        assert_eq!(config.outbox.backoff(4), Duration::from_secs(8));
        assert_eq!(config.outbox.backoff(40), Duration::from_secs(60));
        assert!(config.outbox.lease > config.calls.call_timeout * 2);

        let env = Env::from_pairs([
            (
                "TREVEN_REPORTS_DATABASE_URL",
                "postgres://u@localhost/treven",
            ),
            ("TREVEN_REPORTS_HEARTBEAT_MILLIS", "1000"),
            ("TREVEN_REPORTS_LEASE_MILLIS", "1500"),
        ]);
        let error = ReportsConfig::from_env(&env).expect_err("lease too short");
        assert_eq!(error.variable, "TREVEN_REPORTS_LEASE_MILLIS");

        let env = Env::from_pairs([
            (
                "TREVEN_REPORTS_DATABASE_URL",
                "postgres://u@localhost/treven",
            ),
            ("TREVEN_REPORTS_WORKERS", "500"),
        ]);
        let error = ReportsConfig::from_env(&env).expect_err("too many workers");
        assert_eq!(error.variable, "TREVEN_REPORTS_WORKERS");
        let error = ReportsConfig::from_env(&Env::from_pairs::<&str, &str>([]))
            .expect_err("database required");
        assert_eq!(error.variable, "TREVEN_REPORTS_DATABASE_URL");
    }
}
