//! Infrastructure a drill may break: a private Postgres cluster and a private
//! Redis on free ports, so restarting or stopping them never disturbs the
//! shared servers other tests use at the same time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::tls::TestCa;

/// A Postgres cluster of its own (initdb in a temporary directory), stopped
/// and removed when dropped.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Listen on `localhost` (127.0.0.1 and ::1) rather than 127.0.0.1 only.
    listen: &'static str,
}

/// Who may connect to a TLS-only cluster ([`PrivatePostgres::start_tls`]).
#[derive(Debug, Clone)]
pub struct PostgresLogin {
    /// Login role created (owner of `database`).
    pub user: String,
    /// Its password (stored as SCRAM-SHA-256).
    pub password: String,
    /// Database created, owned by `user`.
    pub database: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A command that runs as the `postgres` user when we are root (Postgres
/// refuses to run as root), as ourselves otherwise.
fn as_postgres(program: PathBuf) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn postgres_bin() -> PathBuf {
    let versions =
        std::fs::read_dir("/usr/lib/postgresql").expect("Debian's postgresql is installed");
    let mut found: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).collect();
    found.sort();
    found.pop().expect("a postgresql version")
}

impl PrivatePostgres {
    /// initdb (trust auth, user `postgres`, fsync off) and start.
    pub fn start() -> PrivatePostgres {
        PrivatePostgres::start_on(free_port())
    }

    /// [`PrivatePostgres::start`] on `port`.
    pub fn start_on(port: u16) -> PrivatePostgres {
        let dir = std::env::temp_dir().join(format!("treven-drill-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let bin = postgres_bin();
        let out = as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = PrivatePostgres {
            dir,
            bin,
            port,
            listen: "127.0.0.1",
        };
        cluster.pg_ctl(&["start"]);
        cluster
    }

    /// Like RDS with `rds.force_ssl=1`: a cluster that accepts TCP
    /// connections only over TLS (`ssl=on` with `ca`'s `localhost`
    /// certificate; `pg_hba.conf` has only `hostssl` lines for `login`'s
    /// database, with scram-sha-256 for any role that has a password (the
    /// master `login` and the login roles `treven migrate` creates), and
    /// `hostnossl … reject`). The `postgres` superuser connects only through
    /// the Unix socket in the cluster's directory, which is how `login` is
    /// created.
    pub fn start_tls(ca: &TestCa, login: &PostgresLogin) -> PrivatePostgres {
        PrivatePostgres::start_tls_on(ca, login, free_port())
    }

    /// [`PrivatePostgres::start_tls`] on `port`.
    pub fn start_tls_on(ca: &TestCa, login: &PostgresLogin, port: u16) -> PrivatePostgres {
        let mut cluster = PrivatePostgres::start_on(port);
        cluster.stop();
        cluster.listen = "localhost";
        let data = cluster.dir.join("data");
        for (from, to) in [
            (&ca.server_cert, "server.crt"),
            (&ca.server_key, "server.key"),
        ] {
            std::fs::copy(from, data.join(to)).unwrap();
            let status = Command::new("chmod")
                .arg("0600")
                .arg(data.join(to))
                .status()
                .unwrap();
            assert!(status.success());
            if is_root() {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(data.join(to))
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
              ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'\n",
        )
        .unwrap();
        let hba = format!(
            "local all postgres trust\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostnossl all all ::/0 reject\n\
             hostssl {db} all 127.0.0.1/32 scram-sha-256\n\
             hostssl {db} all ::1/128 scram-sha-256\n",
            db = login.database,
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        cluster.start_again();
        // Like RDS's master user: not a superuser, but CREATEROLE and
        // CREATEDB (the migrations create the services' login role).
        let role = format!(
            "CREATE ROLE \"{}\" LOGIN CREATEROLE CREATEDB PASSWORD '{}'",
            login.user,
            login.password.replace('\'', "''"),
        );
        let database = format!(
            "CREATE DATABASE \"{}\" OWNER \"{}\"",
            login.database, login.user
        );
        let out = as_postgres(cluster.bin.join("psql"))
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-q",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&cluster.dir)
            .args([
                "-p",
                &cluster.port.to_string(),
                "-c",
                &role,
                "-c",
                &database,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses={} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.listen,
            self.dir.display()
        );
        let out = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options, "-w", "-t", "30", "-m", "fast"])
            .args(action)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the cluster (fast shutdown: connections are cut).
    pub fn stop(&self) {
        self.pg_ctl(&["stop"]);
    }

    /// Starts it again on the same port.
    pub fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis of its own that keeps nothing on disk, stopped when dropped.
pub struct PrivateRedis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `--port 0 --tls-port …` and `--requirepass` when set.
    tls: Option<RedisTls>,
}

/// What makes a [`PrivateRedis`] like ElastiCache with in-transit
/// encryption and an AUTH token.
#[derive(Debug, Clone)]
struct RedisTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    password: String,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port and waits until it answers.
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            child: None,
            port: free_port(),
            tls: None,
        };
        redis.start_again();
        redis
    }

    /// Like ElastiCache with in-transit encryption: no plaintext port
    /// (`--port 0`), TLS on a free port with `ca`'s `localhost` certificate
    /// (clients are not asked for certificates), and `--requirepass
    /// <auth_token>`.
    pub fn start_tls(ca: &TestCa, auth_token: &str) -> PrivateRedis {
        PrivateRedis::start_tls_on(ca, auth_token, free_port())
    }

    /// [`PrivateRedis::start_tls`] on `port`.
    pub fn start_tls_on(ca: &TestCa, auth_token: &str, port: u16) -> PrivateRedis {
        let mut redis = PrivateRedis {
            child: None,
            port,
            tls: Some(RedisTls {
                cert: ca.server_cert.clone(),
                key: ca.server_key.clone(),
                ca: ca.ca_cert.clone(),
                password: auth_token.to_owned(),
            }),
        };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (like a crashed or stopped Redis).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: it keeps nothing).
    pub fn start_again(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no", "--requirepass", &tls.password]);
            }
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
