//! What every Postgres-backed service needs the same way: connection options
//! with TLS (up to `sslmode=verify-full` against the system roots plus the
//! RDS CA bundle), a first connection that names the variable and the peer
//! when it fails, which failures are an outage, a lost race or a bug, and the
//! statement that opens a transaction confined to one organisation by
//! row-level security.

use std::str::FromStr as _;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::OrgId;
use crate::config::{ConfigError, Env};
use crate::tls::TrustRoots;

/// Postgres connection options from the URL in `variable`:
/// - the password from `TREVEN_DATABASE_PASSWORD` when set (ECS injects it
///   from Secrets Manager so it never sits in a URL);
/// - `sslmode` from the URL (`verify-full` in AWS), the server verified
///   against the public roots plus `SSL_CERT_FILE` and `TREVEN_TLS_CA_FILE`
///   (the RDS CA bundle in the image) unless the URL names `sslrootcert`.
pub fn database_options(env: &Env, variable: &str) -> Result<PgConnectOptions, ConfigError> {
    let url = env.required(variable)?;
    let options = PgConnectOptions::from_str(&url)
        .map_err(|e| env.error(variable, format!("not a Postgres URL: {e}")))?;
    let options = match env.get("TREVEN_DATABASE_PASSWORD") {
        Some(password) => options.password(&password),
        None => options,
    };
    let roots = TrustRoots::from_env(env)?;
    let names_root = url.contains("sslrootcert=") || url.contains("ssl-root-cert=");
    Ok(match roots.extra_pem() {
        Some(pem) if !names_root => options.ssl_root_cert_from_pem(pem.to_vec()),
        _ => options,
    })
}

/// Opens one connection with `options`, so a service refuses to start with
/// a message naming `variable` and the server when Postgres cannot be
/// reached or its TLS is not what the URL demands (a plaintext server under
/// `sslmode=verify-full`, a certificate from another CA or for another name).
pub async fn check_connection(options: &PgConnectOptions, variable: &str) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let peer = format!("{}:{}", options.get_host(), options.get_port());
    let mode = match options.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    let connection = options.connect().await.map_err(|error| {
        let reason = match &error {
            sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "{variable}: cannot connect to Postgres at {peer} (sslmode={mode}): {reason}"
        )
    })?;
    connection
        .close()
        .await
        .with_context(|| format!("{variable}: closing the first connection to {peer}"))?;
    Ok(())
}

/// The statement timeout of every organisation transaction.
pub const STATEMENT_TIMEOUT_MS: u32 = 5_000;

/// What a Postgres failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFailure {
    /// Postgres cannot be reached, is shutting down, is out of resources or
    /// timed the statement out: UNAVAILABLE, retrying may work.
    Unavailable,
    /// A unique constraint (named, when Postgres says) was violated.
    UniqueViolation,
    /// A serialization failure or deadlock: a concurrent transaction won.
    Serialization,
    /// Anything else: a bug or a schema mismatch.
    Other,
}

/// Classifies `error` (connection-level errors and SQLSTATE classes).
pub fn classify(error: &sqlx::Error) -> PgFailure {
    use sqlx::Error as E;
    match error {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => PgFailure::Unavailable,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                "23505" => PgFailure::UniqueViolation,
                "40001" | "40P01" => PgFailure::Serialization,
                // statement timeout, database not accepting connections,
                // database missing (yet)
                "57014" | "55000" | "3D000" => PgFailure::Unavailable,
                // connection exception, operator intervention (shutdown),
                // insufficient resources
                c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                    PgFailure::Unavailable
                }
                _ => PgFailure::Other,
            }
        }
        _ => PgFailure::Other,
    }
}

/// `BEGIN` and the settings that confine a transaction to `org` (the
/// `treven_app` role, `app.org_id` for row-level security, the statement
/// timeout), as one simple query for `Pool::begin_with`: one round trip
/// instead of two on every call. The organisation is a UUID formatted here,
/// never client text.
pub fn org_transaction_start(org: OrgId) -> String {
    format!(
        "BEGIN; SELECT set_config('role', 'treven_app', true), \
         set_config('app.org_id', '{org}', true), \
         set_config('statement_timeout', '{STATEMENT_TIMEOUT_MS}', true)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_the_rest_other() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), PgFailure::Unavailable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), PgFailure::Other);
    }

    #[test]
    fn the_transaction_start_names_only_the_organisation() {
        let org: OrgId = "0191a3c4-0000-7000-8000-000000000001"
            .parse()
            .expect("uuid");
        let statement = org_transaction_start(org);
        assert!(statement.starts_with("BEGIN; "));
        assert!(statement.contains("'app.org_id', '0191a3c4-0000-7000-8000-000000000001'"));
    }
}
