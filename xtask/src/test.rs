//! `cargo xtask test`: exactly what CI runs (`.ci/run` calls it).
//!
//! Steps, in order, each printed with its duration; the first failure stops
//! the run with a non-zero exit:
//!
//! 1. tools: the shared bootstrap, cargo-nextest, Postgres and Redis;
//! 2. `cargo fmt --all -- --check`;
//! 3. `buf lint` (buf from the tools dir), then `buf breaking` against the
//!    published contract (see [`crate::breaking`]);
//! 4. `cargo clippy --workspace --all-targets -- -D warnings`;
//! 5. `cargo build -p treven`: the end-to-end tests in `tests/` start the
//!    binary from the target dir;
//! 6. `bash deploy/ci.sh` when it exists (CDK synth, cfn-lint, …): it writes
//!    `deploy/cdk.out/Treven-{dev,prod}.template.json`, which the
//!    configuration-contract and prod-like tests read, so it runs before them;
//! 7. `cargo nextest run --workspace --no-fail-fast` with the test database,
//!    Redis and tools on the environment (the end-to-end journey, drills,
//!    schemathesis, the configuration contract and the prod-like boot run
//!    here);
//! 8. `cargo xtask bench --smoke`: one short round of every bench row with
//!    the debug binaries, no goal asserted, so the bench cannot rot (its
//!    timings mean nothing and are not kept);
//! 9. `cargo xtask fuzz`: every gateway fuzz target for 20 s.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::tools::{self, Tools};
use crate::{cmd, paths, services};

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip fmt, buf lint and clippy: run the tools bootstrap and the tests.
    #[arg(long)]
    pub skip_lint: bool,
    /// Skip `deploy/ci.sh` (the configuration-contract and prod-like tests
    /// then read whatever deploy/cdk.out holds, and fail if it is empty).
    #[arg(long)]
    pub skip_deploy: bool,
    /// Skip the bounded fuzz runs.
    #[arg(long)]
    pub skip_fuzz: bool,
    /// Skip the bench's smoke run.
    #[arg(long)]
    pub skip_bench_smoke: bool,
    /// Passed on to `cargo nextest run` after `--`, e.g. `-- -E 'test(rls)'`
    /// or a name filter.
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

/// One step of the run: a name and what it does.
type Step<'a> = (&'a str, Box<dyn FnOnce() -> Result<()> + 'a>);

/// Runs every step in order; see the module docs.
pub fn run(args: &TestArgs) -> Result<()> {
    let root = paths::workspace_root();
    let env = TestEnv::new(&Tools::locate()?)?;
    let mut summary_line = None;

    let mut steps: Vec<Step<'_>> = vec![(
        "tools (venv, buf, playwright, s3s-fs, chromium, clients/ts npm ci, nextest, postgres, redis)",
        Box::new(|| {
            let tools = Tools::locate()?;
            tools.ensure()?;
            tools.ensure_test_tools()?;
            tools.ensure_chromium()?;
            tools::ensure_ts_client()?;
            tools::ensure_nextest()?;
            services::ensure_postgres_and_redis()
        }),
    )];
    if !args.skip_lint {
        steps.push((
            "cargo fmt --all -- --check",
            Box::new(|| cmd::run(env.command("cargo").args(["fmt", "--all", "--", "--check"]))),
        ));
        steps.push((
            "buf lint",
            Box::new(|| cmd::run(env.command(&env.buf).arg("lint"))),
        ));
        steps.push((
            "buf breaking (against proto/baseline.binpb, and where a branch left main)",
            Box::new(|| {
                let root = paths::workspace_root();
                crate::breaking::check(&env.buf, &root, &crate::breaking::baselines(&root))
            }),
        ));
        steps.push((
            "cargo clippy --workspace --all-targets -- -D warnings",
            Box::new(|| {
                cmd::run(env.command("cargo").args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ));
    }
    steps.push((
        "cargo build -p treven (the binary the end-to-end tests start)",
        Box::new(|| cmd::run(env.command("cargo").args(["build", "-p", "treven"]))),
    ));
    // Before the tests: `deploy/ci.sh` synthesizes deploy/cdk.out, whose
    // templates the configuration-contract and prod-like tests read.
    let deploy_ci = root.join("deploy/ci.sh");
    if !args.skip_deploy && deploy_ci.is_file() {
        steps.push((
            "bash deploy/ci.sh (CDK synth into deploy/cdk.out, which the tests read)",
            Box::new(|| cmd::run(env.command("bash").arg("deploy/ci.sh"))),
        ));
    }
    steps.push((
        "cargo nextest run --workspace --no-fail-fast",
        Box::new(|| {
            let mut nextest = env.command("cargo");
            nextest.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
            nextest.args(&args.nextest_args);
            summary_line = run_nextest(&mut nextest)?;
            Ok(())
        }),
    ));
    if !args.skip_bench_smoke {
        steps.push((
            "cargo xtask bench --smoke (one short round of every row, debug build, no goals)",
            Box::new(|| crate::bench::run(&crate::bench::BenchArgs::smoke())),
        ));
    }
    if !args.skip_fuzz {
        steps.push((
            "cargo xtask fuzz (every gateway fuzz target, 20 s each)",
            Box::new(|| crate::fuzz::run(&crate::fuzz::FuzzArgs::default())),
        ));
    }

    let total = steps.len();
    let mut timings: Vec<(String, Duration, bool)> = Vec::new();
    let mut failure = None;
    for (index, (name, body)) in steps.into_iter().enumerate() {
        let label = format!("[{}/{total}] {name}", index + 1);
        let (result, took) = cmd::step(&label, body);
        timings.push((label, took, result.is_ok()));
        if let Err(err) = result {
            failure = Some(err);
            break;
        }
    }

    say!("\nxtask test summary");
    for (label, took, ok) in &timings {
        say!(
            "  {:<8} {label}",
            if *ok {
                cmd::format_duration(*took)
            } else {
                "FAILED".into()
            }
        );
    }
    let all: Duration = timings.iter().map(|(_, took, _)| *took).sum();
    say!("  {:<8} total", cmd::format_duration(all));
    if let Some(err) = failure {
        return Err(err.context("cargo xtask test failed"));
    }
    // Repeat the test count last, where CI looks for it.
    if let Some(counts) = summary_line.as_deref().and_then(parse_summary) {
        println!(
            "tests: {} passed, {} failed, {} skipped",
            counts.passed, counts.failed, counts.skipped
        );
    }
    Ok(())
}

/// The environment of every step: the tools first on PATH, the tools dir,
/// and the test database and Redis.
pub(crate) struct TestEnv {
    path: OsString,
    tools_dir: PathBuf,
    buf: PathBuf,
}

impl TestEnv {
    pub(crate) fn new(tools: &Tools) -> Result<Self> {
        Ok(Self {
            path: tools.path_env()?,
            tools_dir: tools.dir().to_path_buf(),
            buf: tools.node_bin().join("buf"),
        })
    }

    /// `program`, run from the workspace root with the test environment.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(paths::workspace_root())
            .env("PATH", &self.path)
            .env("TREVEN_TOOLS_DIR", &self.tools_dir)
            .env("TREVEN_TEST_DATABASE_URL", services::TEST_DATABASE_URL)
            .env("TREVEN_TEST_REDIS_URL", services::REDIS_URL);
        command
    }
}

/// Runs nextest, copying its stderr through line by line, and returns its
/// final `Summary [...]` line.
fn run_nextest(nextest: &mut Command) -> Result<Option<String>> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        // Piping stderr would otherwise turn colours off.
        nextest.arg("--color=always");
    }
    let shown = cmd::display(nextest);
    let mut child = nextest
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let mut summary = None;
    if let Some(stderr) = child.stderr.take() {
        let mut ours = std::io::stderr().lock();
        for line in BufReader::new(stderr).lines() {
            let line = line.context("cannot read nextest's output")?;
            let _ = writeln!(ours, "{line}");
            if strip_ansi(&line).trim_start().starts_with("Summary [") {
                summary = Some(strip_ansi(&line));
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(summary)
}

/// Counts from nextest's summary line.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    skipped: u64,
}

/// Parses `Summary [ 1.2s] 12 tests run: 11 passed (1 slow), 1 failed, 3 skipped`.
fn parse_summary(line: &str) -> Option<Counts> {
    let (_, rest) = line.split_once(']')?;
    let (run_part, results) = rest.split_once(':')?;
    let run: u64 = run_part.split_whitespace().next()?.parse().ok()?;
    let count_before = |word: &str| -> u64 {
        let words: Vec<&str> = results.split_whitespace().collect();
        words
            .windows(2)
            .find(|pair| pair[1].trim_end_matches(',').starts_with(word))
            .and_then(|pair| pair[0].parse().ok())
            .unwrap_or(0)
    };
    let passed = count_before("passed");
    let skipped = count_before("skipped");
    Some(Counts {
        passed,
        failed: run.saturating_sub(passed),
        skipped,
    })
}

/// Removes ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_passing_summary() {
        let line = "     Summary [   5.123s] 42 tests run: 42 passed, 3 skipped";
        assert_eq!(
            parse_summary(line),
            Some(Counts {
                passed: 42,
                failed: 0,
                skipped: 3
            })
        );
    }

    #[test]
    fn parses_failures_and_slow_tests() {
        let line = "Summary [ 1.2s] 12 tests run: 10 passed (1 slow), 2 failed, 0 skipped";
        assert_eq!(
            parse_summary(line),
            Some(Counts {
                passed: 10,
                failed: 2,
                skipped: 0
            })
        );
    }

    #[test]
    fn parses_a_single_test_without_skips() {
        let line = "Summary [   0.010s] 1 test run: 1 passed";
        assert_eq!(
            parse_summary(line),
            Some(Counts {
                passed: 1,
                failed: 0,
                skipped: 0
            })
        );
    }

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[32;1m     Summary\u{1b}[0m ["),
            "     Summary ["
        );
    }
}
