//! Process harness: databases, free ports, the `treven` binary, tools.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod client;
pub mod drill;
pub mod journey;
pub mod mesh;
pub mod prodlike;
pub mod template;
pub mod tls;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built `treven` binary, next to this test's own executable.
pub fn treven_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = dir.join("treven");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p treven` (cargo xtask test does)",
        bin.display()
    );
    bin
}

pub use treven_testkit::{Moto, TestDatabase, free_port, tool};

/// A running platform the journey drives, as the frontend does: the
/// gateway's REST and WebSocket addresses and a way to sign users in. The
/// development-shape mesh (`mesh.rs`) and the production shape
/// (`prodlike.rs`) both provide it.
pub trait Stack: Sync {
    /// `http://127.0.0.1:<port>` of the REST surface.
    fn gateway_url(&self) -> &str;
    /// `ws://127.0.0.1:<port>/ws`.
    fn ws_url(&self) -> &str;
    /// Ensures the organisation, the Cognito user and the tenants user with
    /// `role`, and returns it signed in.
    fn sign_in(&self, org: &str, kind: &str, email: &str, role: &str) -> mesh::User;
    /// Called before a chat message is sent: queue what the model answers
    /// (`reply`), when the stack's model is scripted.
    fn before_chat(&self, _reply: &[&str]) {}
    /// Called before a report is created: queue the generated sections
    /// citing `source_id`, when the stack's model is scripted.
    fn before_generation(&self, _source_id: &str) {}
}

/// A `treven` command with a clean, explicit environment.
pub fn treven(envs: &[(&str, String)]) -> Command {
    let mut command = Command::new(treven_bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TREVEN_LOG_FORMAT", "json");
    for (k, v) in envs {
        command.env(k, v);
    }
    command
}

/// Runs a `treven` subcommand to completion.
pub fn run(envs: &[(&str, String)], args: &[&str]) -> Output {
    treven(envs).args(args).output().expect("treven runs")
}

/// A fresh key for every mesh principal, from `treven keygen`: the
/// `TREVEN_MESH_SIGNING_KEYS` and `TREVEN_MESH_PUBLIC_KEYS` entries.
pub fn keygen() -> Vec<(&'static str, String)> {
    let printed = stdout_of(run(&[("TREVEN_ENV", "local".into())], &["keygen"]));
    let value = |name: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("keygen printed no {name}: {printed}"))
            .to_owned()
    };
    vec![
        (
            "TREVEN_MESH_SIGNING_KEYS",
            value("TREVEN_MESH_SIGNING_KEYS"),
        ),
        ("TREVEN_MESH_PUBLIC_KEYS", value("TREVEN_MESH_PUBLIC_KEYS")),
    ]
}

/// A `treven serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    envs: Vec<(&'static str, String)>,
}

impl Server {
    /// Starts `treven serve --target tenants` and waits until it is SERVING.
    pub fn start_tenants(envs: Vec<(&'static str, String)>) -> Self {
        Self::start("tenants", "TREVEN_TENANTS_ADDR", envs)
    }

    /// Starts `treven serve --target <role>` listening where `addr_variable`
    /// says, and waits until it is SERVING.
    pub fn start(
        role: &str,
        addr_variable: &'static str,
        envs: Vec<(&'static str, String)>,
    ) -> Self {
        Self::start_on(role, envs, addr_variable, free_port())
    }

    /// Starts a role whose server has no gRPC health (the gateway) and
    /// waits until `port` accepts connections.
    pub fn start_http(role: &str, envs: Vec<(&'static str, String)>, port: u16) -> Self {
        let child = treven(&envs)
            .args(["serve", "--target", role])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn treven serve");
        treven_testkit::wait_for_port(port, role);
        Self { child, port, envs }
    }

    /// Starts `treven serve --target <role>` with `addr_variable` set to
    /// `127.0.0.1:<port>`, and waits until it is SERVING.
    pub fn start_on(
        role: &str,
        envs: Vec<(&'static str, String)>,
        addr_variable: &'static str,
        port: u16,
    ) -> Self {
        let mut all = envs;
        all.push((addr_variable, format!("127.0.0.1:{port}")));
        let child = treven(&all)
            .args(["serve", "--target", role])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn treven serve");
        let mut server = Self {
            child,
            port,
            envs: all,
        };
        server.wait_serving(Duration::from_secs(30));
        server
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `treven healthcheck` against this server.
    pub fn healthy(&self) -> bool {
        run(&[], &["healthcheck", "--addr", &self.address()])
            .status
            .success()
    }

    fn wait_serving(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr)
                    .ok();
                panic!("treven exited with {status}: {stderr}");
            }
            if self.healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("treven did not become SERVING within {limit:?}");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The env it was started with (to run admin commands alike).
    pub fn envs(&self) -> &[(&'static str, String)] {
        &self.envs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command and returns stdout, panicking with stderr on failure.
pub fn stdout_of(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
