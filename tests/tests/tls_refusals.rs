//! TLS is verified on every hop, and a peer that cannot prove itself is
//! refused with an error naming the variable that points at it and the peer
//! (`host:port`): a plaintext-only Postgres or one whose certificate another
//! CA signed (`TREVEN_TENANTS_DATABASE_URL` with `sslmode=verify-full`), a
//! plaintext Redis behind `rediss://` (`TREVEN_REDIS_URL`, gateway and
//! reports), and an `https://` gRPC upstream that speaks plaintext or shows
//! another CA's certificate (`TREVEN_TENANTS_URL`). Each test starts one
//! process; the process exits non-zero with the message, or, for upstreams
//! it keeps retrying, logs it at error level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::drill::{PostgresLogin, PrivatePostgres, PrivateRedis};
use support::free_port;
use support::prodlike::spawn_logged;
use support::tls::TestCa;

/// A process killed when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The environment every case shares: trust only `ca` (beyond the system
/// roots), json logs, a mesh key and a mesh CA seed.
fn base_env(ca: &TestCa) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = support::keygen()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    env.extend([
        ("TREVEN_ENV".into(), "local".into()),
        ("TREVEN_LOG_FORMAT".into(), "json".into()),
        (
            "TREVEN_MESH_CA_SEED".into(),
            support::template::random_alphanumeric(64),
        ),
        ("SSL_CERT_FILE".into(), ca.ca_cert.display().to_string()),
    ]);
    env
}

fn start(role: &str, env: &[(String, String)]) -> Running {
    let log = std::env::temp_dir().join(format!("treven-tls-{role}-{}.log", uuid::Uuid::new_v4()));
    let args = ["serve", "--target", role].map(str::to_owned);
    let mut env = env.to_vec();
    if role != "gateway" {
        // A gRPC server with mesh TLS names its certificate's DNS names.
        env.push((
            "TREVEN_MESH_TLS_NAMES".into(),
            format!("{role}.treven.internal"),
        ));
    }
    Running {
        child: spawn_logged(&env, &args, &log),
        log,
    }
}

/// Waits (up to 30 s) until the process exits non-zero with a message naming
/// `variable` and `peer`, or (when `logged_is_enough`) logs such a line at
/// error level while running.
fn assert_refused(mut process: Running, variable: &str, peers: &[&str], logged_is_enough: bool) {
    let started = Instant::now();
    let names_both = |text: &str| text.contains(variable) && peers.iter().any(|p| text.contains(p));
    loop {
        let output = std::fs::read_to_string(&process.log).unwrap_or_default();
        if let Some(status) = process.child.try_wait().unwrap() {
            let output = std::fs::read_to_string(&process.log).unwrap_or_default();
            assert!(
                !status.success() && names_both(&output),
                "expected an exit naming {variable} and {peers:?}; exited {status} after printing:\n{output}"
            );
            return;
        }
        if logged_is_enough
            && output
                .lines()
                .any(|l| names_both(l) && (l.contains("\"ERROR\"") || l.contains("ERROR")))
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "after 30 s, no error naming {variable} and {peers:?}; the process printed:\n{output}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with(mut env: Vec<(String, String)>, extra: &[(&str, String)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push(((*k).to_owned(), v.clone()));
    }
    env
}

#[test]
fn tenants_refuses_a_plaintext_only_postgres() {
    // The machine's shared Postgres on 127.0.0.1:5432 speaks no TLS.
    let ca = TestCa::new("plain-pg");
    let env = with(
        base_env(&ca),
        &[
            ("TREVEN_TENANTS_ADDR", format!("127.0.0.1:{}", free_port())),
            (
                "TREVEN_TENANTS_DATABASE_URL",
                "postgres://postgres@localhost:5432/postgres?sslmode=verify-full".into(),
            ),
        ],
    );
    assert_refused(
        start("tenants", &env),
        "TREVEN_TENANTS_DATABASE_URL",
        &["localhost:5432"],
        false,
    );
}

fn login() -> PostgresLogin {
    PostgresLogin {
        user: "treven".into(),
        password: support::template::random_alphanumeric(30),
        database: "treven".into(),
    }
}

#[test]
fn tenants_refuses_a_postgres_whose_certificate_another_ca_signed() {
    let ours = TestCa::new("ours");
    let theirs = TestCa::new("theirs");
    let login = login();
    let postgres = PrivatePostgres::start_tls(&theirs, &login);
    let peer = format!("localhost:{}", postgres.port);
    let env = with(
        base_env(&ours),
        &[
            ("TREVEN_TENANTS_ADDR", format!("127.0.0.1:{}", free_port())),
            (
                "TREVEN_TENANTS_DATABASE_URL",
                format!("postgres://treven@{peer}/treven?sslmode=verify-full"),
            ),
            ("TREVEN_DATABASE_PASSWORD", login.password.clone()),
        ],
    );
    assert_refused(
        start("tenants", &env),
        "TREVEN_TENANTS_DATABASE_URL",
        &[&peer],
        false,
    );
}

/// A plaintext Redis (no TLS port) behind a `rediss://` URL.
fn plaintext_redis_url(redis: &PrivateRedis) -> (String, String) {
    let peer = format!("localhost:{}", redis.port);
    (format!("rediss://:token@{peer}"), peer)
}

#[test]
fn the_gateway_refuses_a_plaintext_redis_behind_rediss() {
    let ca = TestCa::new("plain-redis-gw");
    let redis = PrivateRedis::start();
    let (url, peer) = plaintext_redis_url(&redis);
    let env = with(
        base_env(&ca),
        &[
            ("TREVEN_GATEWAY_ADDR", format!("127.0.0.1:{}", free_port())),
            (
                "TREVEN_GATEWAY_WS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "TREVEN_COGNITO_ISSUER",
                "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_TlsTest".into(),
            ),
            ("TREVEN_COGNITO_CLIENT_ID", "tls-test-client".into()),
            (
                "TREVEN_COGNITO_JWKS_URL",
                format!("http://127.0.0.1:{}/jwks.json", free_port()),
            ),
            ("TREVEN_REDIS_URL", url),
        ],
    );
    // The gateway may keep serving (rate limits reconnect in the background)
    // but must say why at error level.
    assert_refused(start("gateway", &env), "TREVEN_REDIS_URL", &[&peer], true);
}

#[test]
fn reports_refuses_a_plaintext_redis_behind_rediss() {
    let ca = TestCa::new("plain-redis-reports");
    let login = login();
    let postgres = PrivatePostgres::start_tls(&ca, &login);
    let redis = PrivateRedis::start();
    let (url, peer) = plaintext_redis_url(&redis);
    let env = with(
        base_env(&ca),
        &[
            ("TREVEN_REPORTS_ADDR", format!("127.0.0.1:{}", free_port())),
            (
                "TREVEN_REPORTS_DATABASE_URL",
                format!(
                    "postgres://treven@localhost:{}/treven?sslmode=verify-full",
                    postgres.port
                ),
            ),
            ("TREVEN_DATABASE_PASSWORD", login.password.clone()),
            ("TREVEN_REDIS_URL", url),
        ],
    );
    let migrated = support::prodlike::treven_with(&env)
        .args(["migrate", "--target", "reports"])
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "migrate over TLS: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert_refused(start("reports", &env), "TREVEN_REDIS_URL", &[&peer], true);
}

/// `openssl s_server` presenting `ca`'s localhost certificate (h2 offered).
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(ca: &TestCa) -> TlsServer {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-alpn", "h2", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&ca.server_cert)
            .arg("-key")
            .arg(&ca.server_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        treven_testkit::wait_for_port(port, "openssl s_server");
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway with `TREVEN_TENANTS_URL=https://tenants.treven.internal:50051`
/// resolved to `port` on loopback.
fn gateway_calling_tenants_on(ca: &TestCa, port: u16) -> Running {
    let env = with(
        base_env(ca),
        &[
            ("TREVEN_GATEWAY_ADDR", format!("127.0.0.1:{}", free_port())),
            (
                "TREVEN_GATEWAY_WS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "TREVEN_COGNITO_ISSUER",
                "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_TlsTest".into(),
            ),
            ("TREVEN_COGNITO_CLIENT_ID", "tls-test-client".into()),
            (
                "TREVEN_COGNITO_JWKS_URL",
                format!("http://127.0.0.1:{}/jwks.json", free_port()),
            ),
            (
                "TREVEN_TENANTS_URL",
                "https://tenants.treven.internal:50051".into(),
            ),
            (
                "TREVEN_RESOLVE",
                format!("tenants.treven.internal:50051=127.0.0.1:{port}"),
            ),
        ],
    );
    start("gateway", &env)
}

#[test]
fn an_https_upstream_with_another_cas_certificate_is_refused() {
    let ours = TestCa::new("mesh-ours");
    let theirs = TestCa::new("mesh-theirs");
    let server = TlsServer::start(&theirs);
    assert_refused(
        gateway_calling_tenants_on(&ours, server.port),
        "TREVEN_TENANTS_URL",
        &[
            "tenants.treven.internal:50051",
            &format!("127.0.0.1:{}", server.port),
        ],
        true,
    );
}

#[test]
fn an_https_upstream_that_speaks_plaintext_is_refused() {
    let ca = TestCa::new("mesh-plain");
    // A plaintext listener: the machine's Redis protocol, no TLS.
    let plain = PrivateRedis::start();
    assert_refused(
        gateway_calling_tenants_on(&ca, plain.port),
        "TREVEN_TENANTS_URL",
        &[
            "tenants.treven.internal:50051",
            &format!("127.0.0.1:{}", plain.port),
        ],
        true,
    );
}
