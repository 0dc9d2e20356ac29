//! Typed configuration from `TREVEN_*` environment variables.
//!
//! Each service has one config struct built by reading variables through
//! [`Env`], which turns every problem into a [`ConfigError`] naming the
//! variable. Config is validated once at start-up; a bad value stops the
//! process before it binds a port.
//!
//! This is written here rather than with a config crate because the whole
//! surface is "read a variable, parse it, say which one was wrong", and the
//! messages are the point.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that is missing or invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable, e.g. `TREVEN_TENANTS_ADDR`.
    pub variable: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A source of variables: the process environment, or a map in tests.
///
/// Every name asked for is remembered ([`Env::read_names`]), so
/// `treven serve --check-config` can tell which `TREVEN_*` variables that
/// are set no role reads (a renamed or stale setting in the CDK app).
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: Option<HashMap<String, String>>,
    read: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self {
            overrides: None,
            read: Default::default(),
        }
    }

    /// Every variable name asked for so far (set or not).
    pub fn read_names(&self) -> std::collections::BTreeSet<String> {
        self.read.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The `TREVEN_*` variables that are set but were never asked for.
    pub fn unread_treven_variables(&self) -> Vec<String> {
        let read = self.read_names();
        let set: Vec<String> = match &self.overrides {
            Some(map) => map.keys().cloned().collect(),
            None => std::env::vars().map(|(name, _)| name).collect(),
        };
        let mut unread: Vec<String> = set
            .into_iter()
            .filter(|name| name.starts_with("TREVEN_") && !read.contains(name))
            .collect();
        unread.sort();
        unread
    }

    /// Reads only the given pairs (for tests and embedded use).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            read: Default::default(),
        }
    }

    /// The raw value, `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Ok(mut read) = self.read.lock() {
            read.insert(name.to_owned());
        }
        let value = match &self.overrides {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// A required string.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError {
            variable: name.to_owned(),
            problem: "is required".to_owned(),
        })
    }

    /// An optional value parsed with `FromStr`.
    pub fn parse<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|raw| {
                raw.trim().parse::<T>().map_err(|e| ConfigError {
                    variable: name.to_owned(),
                    problem: format!("cannot parse {raw:?}: {e}"),
                })
            })
            .transpose()
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.parse(name)?.unwrap_or(default))
    }

    /// A listen or connect address, `host:port`.
    pub fn socket_addr_or(
        &self,
        name: &str,
        default: SocketAddr,
    ) -> Result<SocketAddr, ConfigError> {
        self.parse_or(name, default)
    }

    /// A duration in whole seconds within `range`.
    pub fn seconds_or(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse_or(name, default)?;
        if !range.contains(&secs) {
            return Err(ConfigError {
                variable: name.to_owned(),
                problem: format!(
                    "must be between {} and {} seconds, got {secs}",
                    range.start(),
                    range.end()
                ),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    /// An error about `name`, for checks the helpers above do not cover.
    pub fn error(&self, name: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: name.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Where the process runs; decides defaults such as listen addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A developer machine or a test: loopback defaults.
    Local,
    /// The AWS dev account.
    Dev,
    /// Production.
    Prod,
}

impl Environment {
    /// Reads `TREVEN_ENV` (default `local`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get("TREVEN_ENV").as_deref().unwrap_or("local") {
            "local" => Ok(Environment::Local),
            "dev" => Ok(Environment::Dev),
            "prod" => Ok(Environment::Prod),
            other => Err(env.error(
                "TREVEN_ENV",
                format!("must be local, dev or prod, got {other:?}"),
            )),
        }
    }

    /// The default listen address for a service port: loopback locally,
    /// every interface in AWS.
    pub fn default_listen(self, port: u16) -> SocketAddr {
        match self {
            Environment::Local => SocketAddr::from(([127, 0, 0, 1], port)),
            Environment::Dev | Environment::Prod => SocketAddr::from(([0, 0, 0, 0], port)),
        }
    }

    /// The lowercase name, as in resource names (`treven-data-local`).
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Dev => "dev",
            Environment::Prod => "prod",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("TREVEN_X_ADDR", "nope"), ("TREVEN_GRACE", "999")]);
        let err = env.socket_addr_or(
            "TREVEN_X_ADDR",
            "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(err.map_err(|e| e.variable), Err("TREVEN_X_ADDR".to_owned()));
        let err = env
            .seconds_or("TREVEN_GRACE", 5, 1..=60)
            .expect_err("out of range");
        assert!(
            err.to_string()
                .starts_with("TREVEN_GRACE: must be between 1 and 60"),
            "{err}"
        );
        let err = env.required("TREVEN_MISSING").expect_err("missing");
        assert_eq!(err.to_string(), "TREVEN_MISSING: is required");
    }

    #[test]
    fn blank_counts_as_unset() {
        let env = Env::from_pairs([("TREVEN_ENV", "  ")]);
        assert_eq!(Environment::from_env(&env), Ok(Environment::Local));
        let env = Env::from_pairs([("TREVEN_ENV", "staging")]);
        assert!(Environment::from_env(&env).is_err());
    }
}
