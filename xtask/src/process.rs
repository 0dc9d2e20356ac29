//! Child processes that xtask owns, each in its own process group, and the
//! signals that stop them.
//!
//! Why process groups: the terminal sends Ctrl-C to its whole foreground
//! group. Children in groups of their own do not see it, so xtask alone
//! decides how they stop (SIGTERM to the group, a grace period, then SIGKILL)
//! and waits for them, whether the stop came from Ctrl-C or from a SIGTERM
//! sent to xtask only. Signalling the group also reaches grandchildren
//! (rustc under cargo, werkzeug threads under moto).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

/// The stop signals xtask listens for once it owns long-lived children.
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Replaces the default disposition (exit) of SIGINT, SIGTERM and SIGHUP
    /// with a notification, so xtask can clean up first.
    pub fn install() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    /// Waits for the next stop signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// A child process that leads its own process group.
pub struct GroupChild {
    name: String,
    child: Child,
    pgid: Option<Pid>,
    exited: Option<ExitStatus>,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group. The child is
    /// killed if this handle is dropped without [`GroupChild::stop`].
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        let child = command
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        Ok(Self {
            name: name.to_owned(),
            child,
            pgid,
            exited: None,
        })
    }

    /// Reads the first line the child prints on its (piped) stdout, waiting
    /// at most `limit`; the rest of its output is left unread.
    pub async fn read_stdout_line(&mut self, limit: Duration) -> Result<String> {
        use tokio::io::AsyncBufReadExt as _;
        let stdout = self
            .child
            .stdout
            .take()
            .with_context(|| format!("{}'s stdout is not piped", self.name))?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        tokio::time::timeout(limit, reader.read_line(&mut line))
            .await
            .with_context(|| format!("{} printed nothing within {}s", self.name, limit.as_secs()))?
            .with_context(|| format!("cannot read {}'s output", self.name))?;
        Ok(line.trim().to_owned())
    }

    /// What the child is called in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> Option<i32> {
        self.pgid.map(Pid::as_raw_nonzero).map(i32::from)
    }

    /// Waits until the child exits; cancel-safe, and returns the same status
    /// again once it has exited.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("cannot wait for {}", self.name))?;
        self.exited = Some(status);
        Ok(status)
    }

    /// Stops the child's whole group: SIGTERM, up to `grace` to exit, then
    /// SIGKILL. A further stop signal during the grace period skips the rest
    /// of it. Returns once the leader has been reaped.
    pub async fn stop(&mut self, grace: Duration, signals: &mut StopSignals) -> Result<()> {
        if self.exited.is_none() {
            self.signal_group(Signal::TERM);
            tokio::select! {
                status = self.wait() => { status?; }
                () = tokio::time::sleep(grace) => {
                    say!("    {} did not stop within {}s: killing it", self.name, grace.as_secs());
                }
                name = signals.recv() => {
                    say!("    {name} again: killing {}", self.name);
                }
            }
        }
        // Whatever is left in the group (workers of the leader) goes too.
        self.signal_group(Signal::KILL);
        self.wait().await?;
        Ok(())
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH means the group is already gone, which is the goal.
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
    }
}

/// Runs `command` to completion in its own process group, stopping it (and
/// failing) if a stop signal arrives first.
pub async fn run_to_end(
    name: &str,
    command: &mut Command,
    signals: &mut StopSignals,
) -> Result<()> {
    let mut child = GroupChild::spawn(name, command)?;
    tokio::select! {
        status = child.wait() => {
            let status = status?;
            if !status.success() {
                bail!("{name} failed ({status})");
            }
            Ok(())
        }
        signal = signals.recv() => {
            say!("    {signal}: stopping {name}");
            child.stop(Duration::from_secs(5), signals).await?;
            bail!("interrupted by {signal} during {name}");
        }
    }
}

/// Like [`run_to_end`] but returns the child's stdout (stdout must be piped
/// by the caller).
pub async fn output_to_end(
    name: &str,
    command: &mut Command,
    signals: &mut StopSignals,
) -> Result<String> {
    let child = command
        .process_group(0)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    tokio::select! {
        out = child.wait_with_output() => {
            let out = out.with_context(|| format!("cannot wait for {name}"))?;
            if !out.status.success() {
                bail!("{name} failed ({})", out.status);
            }
            String::from_utf8(out.stdout).with_context(|| format!("{name} printed non-UTF-8 output"))
        }
        signal = signals.recv() => {
            // Short-lived helpers: kill outright; kill_on_drop reaps the leader.
            if let Some(pgid) = pgid {
                let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
            }
            bail!("interrupted by {signal} during {name}");
        }
    }
}

/// Waits until `addr` accepts TCP connections, failing if `child` exits, a
/// stop signal arrives, or `limit` passes.
pub async fn wait_for_port(
    addr: &str,
    limit: Duration,
    child: &mut GroupChild,
    signals: &mut StopSignals,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not accept connections on {addr} within {}s",
                child.name(),
                limit.as_secs()
            );
        }
        tokio::select! {
            status = child.wait() => {
                bail!("{} exited before listening on {addr} ({})", child.name(), status?);
            }
            signal = signals.recv() => bail!("interrupted by {signal} while waiting for {}", child.name()),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// A record of the long-lived children of a running `cargo xtask dev`, so a
/// later run can stop them if xtask itself was killed without cleaning up.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PidFile {
    /// (name as seen in /proc/<pid>/cmdline, pid)
    pub children: Vec<(String, i32)>,
}

impl PidFile {
    /// Adds a child and rewrites the file.
    pub fn record(&mut self, path: &Path, marker: &str, pid: Option<i32>) -> Result<()> {
        if let Some(pid) = pid {
            self.children.push((marker.to_owned(), pid));
        }
        let text = serde_json::to_string(self).context("cannot serialise the pid file")?;
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Stops children left behind by an earlier `cargo xtask dev` that died
/// without cleaning up, as listed in `path`: only those pids whose command
/// line still contains the recorded marker.
pub fn stop_leftovers(path: &PathBuf) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let pids: PidFile = serde_json::from_str(&text).unwrap_or_default();
    for (marker, pid) in pids.children {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let Some(group) = Pid::from_raw(pid) else {
            continue;
        };
        if !cmdline.contains(&marker) {
            continue;
        }
        say!("    stopping leftover {marker} (pid {pid}) from an earlier run");
        let _ = rustix::process::kill_process_group(group, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && rustix::process::test_kill_process(group).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    }
    fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
}
