//! Postgres and Redis on loopback: check they answer, start them when they
//! are installed but stopped, and create the dev database.
//!
//! They are shared infrastructure of the machine, so xtask starts them as
//! daemons and never stops them.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Where Postgres must answer.
pub const POSTGRES_ADDR: &str = "127.0.0.1:5432";
/// Where Redis must answer.
pub const REDIS_ADDR: &str = "127.0.0.1:6379";
/// The database the tests create their own databases from.
pub const TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The Redis the tests and the dev stack use.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The dev stack's database name.
pub const DEV_DATABASE: &str = "treven_local";
/// The dev stack's database URL.
pub const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/treven_local";

/// Whether something accepts TCP connections on `addr` (within 500 ms).
pub fn answers(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

/// Waits until `addr` accepts connections, for at most `limit`.
pub fn wait_until_answers(addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if answers(addr) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Makes sure Postgres and Redis answer on loopback.
pub fn ensure_postgres_and_redis() -> Result<()> {
    ensure_postgres()?;
    ensure_redis()
}

/// Makes sure Postgres answers on [`POSTGRES_ADDR`], starting the installed
/// Debian cluster (`pg_ctlcluster <version> main start`) when it does not.
pub fn ensure_postgres() -> Result<()> {
    if answers(POSTGRES_ADDR) {
        return Ok(());
    }
    let Some(pg_ctlcluster) = cmd::find_on_path("pg_ctlcluster") else {
        bail!(
            "Postgres does not answer on {POSTGRES_ADDR} and pg_ctlcluster is not installed: \
             install PostgreSQL 15 (apt-get install postgresql) or start your own server there \
             with user `postgres` allowed to connect without a password"
        );
    };
    let version = newest_cluster_version().context(
        "Postgres does not answer and /etc/postgresql has no cluster: create one with \
         `pg_createcluster 15 main`",
    )?;
    say!("    starting Postgres {version} (pg_ctlcluster)");
    cmd::run_to_stderr(Command::new(pg_ctlcluster).args([
        "--skip-systemctl-redirect",
        &version,
        "main",
        "start",
    ]))
    .context("cannot start Postgres (as a non-root user try `sudo pg_ctlcluster …`)")?;
    if !wait_until_answers(POSTGRES_ADDR, Duration::from_secs(20)) {
        bail!(
            "Postgres was started but does not answer on {POSTGRES_ADDR}: is it listening on TCP?"
        );
    }
    Ok(())
}

/// Makes sure Redis answers on [`REDIS_ADDR`], starting `redis-server` as a
/// daemon without persistence when it does not.
pub fn ensure_redis() -> Result<()> {
    if answers(REDIS_ADDR) {
        return Ok(());
    }
    let Some(redis_server) = cmd::find_on_path("redis-server") else {
        bail!(
            "Redis does not answer on {REDIS_ADDR} and redis-server is not installed: \
             install Redis 7 (apt-get install redis-server) or start one there"
        );
    };
    say!("    starting redis-server on {REDIS_ADDR}");
    cmd::run_to_stderr(Command::new(redis_server).args([
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
    ]))
    .context("cannot start redis-server")?;
    if !wait_until_answers(REDIS_ADDR, Duration::from_secs(10)) {
        bail!("redis-server was started but does not answer on {REDIS_ADDR}");
    }
    Ok(())
}

/// Creates database `name` unless it exists (with psql as user postgres).
pub fn ensure_database(name: &str) -> Result<()> {
    let psql = cmd::find_on_path("psql").context(
        "psql is not on PATH: install the PostgreSQL client (apt-get install postgresql-client)",
    )?;
    let base = || {
        let mut psql = Command::new(&psql);
        psql.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .env("PGCONNECT_TIMEOUT", "5");
        psql
    };
    let exists = cmd::output(base().args([
        "-tAc",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    ]))
    .context("cannot query Postgres as user postgres on 127.0.0.1")?;
    if exists.trim() == "1" {
        return Ok(());
    }
    say!("    creating database {name}");
    cmd::run_to_stderr(base().args(["-qc", &format!("CREATE DATABASE \"{name}\"")]))
        .with_context(|| format!("cannot create database {name}"))
}

/// The highest version directory under /etc/postgresql (e.g. `15`).
fn newest_cluster_version() -> Option<String> {
    let mut versions: Vec<(Vec<u32>, String)> = std::fs::read_dir(PathBuf::from("/etc/postgresql"))
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, name))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, name)| name)
}
