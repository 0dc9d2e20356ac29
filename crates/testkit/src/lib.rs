//! Test support shared by the Treven test suites: fresh Postgres databases,
//! where the tools installed by `cargo xtask` are, free loopback ports, and
//! the AWS emulators as child processes that stop when dropped.

#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod bedrock;
pub mod fault;
pub mod gemini;
pub mod policy;
pub mod role;

pub use role::InProcess;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Postgres server test databases are created on
/// (`TREVEN_TEST_DATABASE_URL`, default the local `postgres` database).
pub fn postgres_admin_url() -> String {
    std::env::var("TREVEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh Postgres database for one test; [`TestDatabase::drop`] removes it.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name (`<prefix>_<uuid>`).
    pub name: String,
    /// A URL connecting to it as the server's admin user.
    pub url: String,
}

impl TestDatabase {
    /// Creates `<prefix>_<random>` on the test server.
    pub async fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        Self::admin_exec_on(&format!("CREATE DATABASE {name}")).await;
        let base = postgres_admin_url();
        let url = format!(
            "{}/{name}",
            base.rsplit_once('/').expect("the URL names a database").0
        );
        Self { name, url }
    }

    /// This database's URL with `login` as the user (no password: the test
    /// server trusts loopback). Services in tests log in this way, as the
    /// login role `treven migrate` creates, so row-level security applies to
    /// them for real; migrations run as [`TestDatabase::owner_user`].
    pub fn login_url(&self, login: &str) -> String {
        with_user(&self.url, login)
    }

    /// The user of the test server's admin URL (`postgres`): the owner that
    /// migrations run as in tests (`TREVEN_MIGRATE_DATABASE_USER`).
    pub fn owner_user() -> String {
        let url = postgres_admin_url();
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        match rest.split_once('@') {
            Some((user, _)) => user.split(':').next().unwrap_or_default().to_owned(),
            None => "postgres".to_owned(),
        }
    }

    /// A connection as the owner (superuser), outside row-level security.
    pub async fn owner(&self) -> sqlx::PgConnection {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs SQL on the server's maintenance database.
    pub async fn admin_exec(&self, sql: &str) {
        Self::admin_exec_on(sql).await;
    }

    async fn admin_exec_on(sql: &str) {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("the test Postgres answers");
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }

    /// Drops it (closing any connections left).
    pub async fn drop(self) {
        Self::admin_exec_on(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await;
    }
}

/// `url` with its user replaced by `user` (and its password dropped).
pub fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// The tools dir of `cargo xtask` (`$TREVEN_TOOLS_DIR`, default
/// `~/.cache/treven/tools`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("TREVEN_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/treven/tools")
        })
}

/// A tool installed by `cargo xtask`: the pinned one in the tools dir (its
/// venv or cargo root), else one on PATH.
pub fn tool(name: &str) -> PathBuf {
    let tools = tools_dir();
    for candidate in [
        tools.join("venv/bin").join(name),
        tools.join("cargo/bin").join(name),
    ] {
        if candidate.is_file() {
            return candidate;
        }
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in {} or on PATH: run `cargo xtask test`",
                tools.display()
            )
        })
}

/// A loopback port no other test process will take while this one lives.
///
/// Not `bind(0)`: that hands out a port from the kernel's ephemeral range,
/// the range every outgoing connection takes its source port from, and once
/// the probe socket is closed another test process's `bind(0)` or
/// `connect()` can take the port before the child server binds it (CI saw
/// `Address already in use` that way). So ports come from
/// [`TEST_PORTS`], below the ephemeral range (Linux default 32768–60999),
/// and each is claimed with an exclusive lock on
/// `$TMPDIR/treven-test-ports/<port>.lock` held until this process exits,
/// which nextest's concurrent test processes respect. The lock files stay
/// behind (they are empty); a lock dies with its process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());

    let dir = std::env::temp_dir().join("treven-test-ports");
    std::fs::create_dir_all(&dir).expect("create the test port lock directory");
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u16;
    for step in 0..span {
        let port = TEST_PORTS.start + (start + step) % span;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
            .expect("open a test port lock file");
        if lock.try_lock().is_ok() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// Where [`free_port`] takes ports from: below Linux's ephemeral range, above
/// the well-known services a developer machine runs (Postgres, Redis).
pub const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Waits until something accepts on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server on `port` is moto (its `/moto-api/` page answers 200).
fn answers_as_moto(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// moto's server (S3, DynamoDB, Cognito, Secrets Manager …) on a free port,
/// killed when dropped. `TREVEN_TEST_MOTO_LOG=<file>` keeps its log.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// Starts it and waits until it answers as moto. A free port can be taken
    /// by another test between choosing it and moto binding it (moto then
    /// exits, and the port still accepts — someone else's server): moto is
    /// recognised by its `/moto-api/` page, and started again on another
    /// port when it is not the one answering.
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(moto) = Self::try_start() {
                return moto;
            }
        }
        panic!("moto did not start on any of 5 free ports");
    }

    fn try_start() -> Option<Self> {
        let port = free_port();
        let log = || match std::env::var_os("TREVEN_TEST_MOTO_LOG") {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("moto log"),
            ),
            None => Stdio::null(),
        };
        let child = Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("moto_server starts");
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if moto.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            if answers_as_moto(port) {
                return Some(moto);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = moto.child.kill();
        None
    }

    /// The standard AWS environment pointing at this emulator.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "eu-west-2".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// SDK config for this emulator (one attempt, short timeouts).
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        sdk_for(&self.endpoint, "test", "test").await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK config for `endpoint` with a single attempt and short timeouts, so
/// failure tests are quick.
pub async fn sdk_for(endpoint: &str, access_key: &str, secret_key: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-2"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            access_key, secret_key, None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

/// s3s-fs: a small S3 server that, unlike moto, checks SigV4 signatures
/// (presigned URLs included) and `x-amz-checksum-*` headers. It has no
/// versioning. Killed (and its files removed) when dropped.
pub struct S3sFs {
    child: Child,
    root: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// Access key s3s-fs accepts.
pub const S3S_ACCESS_KEY: &str = "AKIATREVENTEST";
/// Secret key s3s-fs accepts.
pub const S3S_SECRET_KEY: &str = "treven-test-secret-key";

impl S3sFs {
    /// Starts it with `buckets` as directories.
    pub fn start(buckets: &[&str]) -> Self {
        let port = free_port();
        let root = std::env::temp_dir().join(format!("treven-s3s-{}", uuid::Uuid::new_v4()));
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).unwrap();
        }
        let child = Command::new(tool("s3s-fs"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3S_ACCESS_KEY,
                "--secret-key",
                S3S_SECRET_KEY,
            ])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        wait_for_port(port, "s3s-fs");
        Self {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
