//! Running the measuring tools: the `treven-load` generator (one JSON line
//! per run), `pgbench`, and alternating A/B rounds of either.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::paths;

/// The profile of the measured binaries (see the workspace Cargo.toml);
/// the smoke run uses the debug ones.
pub(super) const PROFILE: &str = "perf";
/// pgbench's own database.
pub(super) const PGBENCH_DATABASE: &str = "treven_pgbench";

/// The `treven-load` binary of the profile in use.
pub(super) fn load_binary() -> PathBuf {
    paths::target_dir()
        .join(paths::profile_dir())
        .join("treven-load")
}

/// Runs `a` and `b` alternately `rounds` times.
pub(super) async fn pairs<FA, FB, A, B>(
    rounds: usize,
    a: FA,
    b: FB,
) -> Result<(Vec<Value>, Vec<Value>)>
where
    FA: Fn() -> A,
    FB: Fn() -> B,
    A: std::future::Future<Output = Result<Value>>,
    B: std::future::Future<Output = Result<Value>>,
{
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        xs.push(a().await?);
        ys.push(b().await?);
    }
    Ok((xs, ys))
}

/// Runs `a` `rounds` times.
pub(super) async fn repeat<F, A>(rounds: usize, a: F) -> Result<Vec<Value>>
where
    F: Fn() -> A,
    A: std::future::Future<Output = Result<Value>>,
{
    let mut xs = Vec::new();
    for _ in 0..rounds {
        xs.push(a().await?);
    }
    Ok(xs)
}

/// Runs `treven-load <args>` and parses the JSON line it prints; a run with
/// errors fails the bench (a broken setup must not pass for a slow one).
pub(super) async fn load(args: Vec<String>, env: Vec<(&'static str, String)>) -> Result<Value> {
    let out = Command::new(load_binary())
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("cannot run treven-load")?;
    if !out.status.success() {
        bail!(
            "treven-load {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .with_context(|| format!("treven-load {} printed {text:?}", args[0]))?;
    if value["errors"].as_u64().unwrap_or(0) > 0 || value["failed"].as_u64().unwrap_or(0) > 0 {
        bail!("treven-load {} saw errors: {value}", args[0]);
    }
    Ok(value)
}

/// Owned arguments from string slices.
pub(super) fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// `pgbench -S` (select-only) at `clients`, as `{"tps": …}`.
pub(super) async fn pgbench(clients: u32, seconds: f64) -> Result<Value> {
    let mut command = Command::new("pgbench");
    command
        .args(["-S", "-n", "-h", "127.0.0.1", "-U", "postgres", "-j", "2"])
        .args([
            "-c",
            &clients.to_string(),
            "-T",
            &(seconds.ceil() as u64).to_string(),
        ])
        .arg(PGBENCH_DATABASE);
    pgbench_tps(command).await
}

/// What one pgbench run of a custom script needs.
pub(super) struct Script<'a> {
    /// The script's text (see [`super::sql`]).
    pub text: String,
    /// Where to write it.
    pub path: PathBuf,
    /// The database URL of the service whose SQL it is: the same login
    /// role and database.
    pub database_url: &'a str,
    /// `PGOPTIONS` (the reports service's `search_path`), if any.
    pub pgoptions: Option<&'a str>,
    /// The script's variables (`-D name=value`).
    pub variables: Vec<(&'static str, String)>,
}

/// pgbench running `script` (`-M prepared`, as sqlx prepares its reads) at
/// `clients` for `seconds`, as `{"tps": …}`.
pub(super) async fn pgbench_script(
    script: &Script<'_>,
    clients: u32,
    seconds: f64,
) -> Result<Value> {
    std::fs::write(&script.path, &script.text)
        .with_context(|| format!("cannot write {}", script.path.display()))?;
    let mut command = Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-j", "2"])
        .args([
            "-c",
            &clients.to_string(),
            "-T",
            &(seconds.ceil() as u64).to_string(),
        ])
        .arg("-f")
        .arg(&script.path);
    for (name, value) in &script.variables {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    if let Some(options) = script.pgoptions {
        command.env("PGOPTIONS", options);
    }
    // A URL as the database name: pgbench connects with it as libpq does.
    command.arg(script.database_url);
    pgbench_tps(command).await
}

/// Runs `command` (a pgbench) and reads its `tps = …` line; a run that
/// aborted or failed transactions is an error, not a slow floor.
async fn pgbench_tps(mut command: Command) -> Result<Value> {
    let out = command.output().await.context("cannot run pgbench")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("aborted") {
        bail!("pgbench failed ({}): {stderr}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(failed) = text
        .lines()
        .find_map(|line| line.strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|n| *n != "0")
    {
        bail!("pgbench: {failed} failed transactions: {text} {stderr}");
    }
    let tps = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench printed {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::json!({ "tps": tps }))
}

/// The number `name` of each load run's JSON, where present.
pub(super) fn field(values: &[Value], name: &str) -> Vec<f64> {
    values.iter().filter_map(|v| v[name].as_f64()).collect()
}
