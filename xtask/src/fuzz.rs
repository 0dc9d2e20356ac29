//! `cargo xtask fuzz [--seconds N] [TARGET]`: build the gateway's cargo-fuzz
//! targets (`gateway/fuzz`) and run each for a bounded time.
//!
//! - cargo-fuzz comes from the tools dir ([`crate::tools::CARGO_FUZZ`]);
//! - the toolchain is the pinned stable one: libFuzzer's `-Z` flags are
//!   enabled with `RUSTC_BOOTSTRAP=1`, no nightly needed;
//! - builds go to their own target dir (`$TREVEN_FUZZ_TARGET_DIR`, default
//!   `$HOME/.cache/treven/fuzz-target`): the sanitizer-coverage flags differ
//!   from the workspace's, so sharing would rebuild both every time;
//! - each target reads the committed seeds (`gateway/fuzz/corpus/<target>`)
//!   and grows a working corpus in the fuzz target dir, so later runs on the
//!   same machine start where the last one stopped, and the clone stays
//!   clean;
//! - a crash, panic, timeout or out-of-memory fails the task with the
//!   reproducer's path and the command that replays it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::tools::Tools;
use crate::{cmd, paths};

/// The sanitizer the targets are built with. Treven's code forbids
/// `unsafe`, so AddressSanitizer would mostly check the dependencies, at
/// about half the executions per second and a slower build; panics,
/// overflow checks and debug assertions are on either way. Run
/// `cargo fuzz` by hand with `-s address` to hunt memory bugs in them.
pub const SANITIZER: &str = "none";

/// Per-input time limit: an input slower than this is reported as a hang.
const TIMEOUT_SECS: u64 = 10;
/// Memory limit of one target process.
const RSS_LIMIT_MB: u64 = 2048;
/// Largest input libFuzzer generates.
const MAX_LEN: u64 = 4096;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// How long each target runs, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// One target to run (default: every target of gateway/fuzz).
    pub target: Option<String>,
    /// Extra libFuzzer options for every target, after `--`
    /// (e.g. `-- -jobs=2 -dict=…`).
    #[arg(last = true)]
    pub libfuzzer_args: Vec<String>,
}

impl Default for FuzzArgs {
    /// Every target for 20 seconds: what CI runs.
    fn default() -> Self {
        Self {
            seconds: 20,
            target: None,
            libfuzzer_args: Vec::new(),
        }
    }
}

/// How one target's run ended.
#[derive(Debug, Default)]
struct Outcome {
    executions: Option<u64>,
    execs_per_sec: Option<u64>,
    new_units: Option<u64>,
    peak_rss_mb: Option<u64>,
    /// `Test unit written to <path>`: the input that crashed or hung.
    reproducer: Option<PathBuf>,
    /// The line that said what went wrong (`==ERROR: libFuzzer: deadly signal`…).
    reason: Option<String>,
}

impl Outcome {
    /// What went wrong, if anything: the reproducer's path, else the reason.
    fn failure(&self) -> Option<String> {
        match (&self.reproducer, &self.reason) {
            (Some(path), _) => Some(path.display().to_string()),
            (None, Some(reason)) => Some(reason.clone()),
            (None, None) => None,
        }
    }
}

/// Builds the fuzz targets, then runs them one after the other.
pub fn run(args: &FuzzArgs) -> Result<()> {
    let tools = Tools::locate()?;
    let fuzz = Fuzz::new(&tools)?;
    let (installed, _) = cmd::step("cargo-fuzz (tools dir)", || tools.ensure_fuzz_tools());
    installed?;

    let all = fuzz.list()?;
    let targets: Vec<String> = match &args.target {
        Some(target) if all.contains(target) => vec![target.clone()],
        Some(target) => bail!(
            "no fuzz target `{target}`: the targets are {}",
            all.join(", ")
        ),
        None => all,
    };

    let (built, build_time) = cmd::step(
        &format!("cargo fuzz build -s {SANITIZER} ({})", targets.join(", ")),
        || fuzz.build(args.target.as_deref()),
    );
    built?;

    let mut results = Vec::new();
    for target in &targets {
        let started = Instant::now();
        let mut outcome = None;
        let (result, _) = cmd::step(&format!("fuzz {target} for {}s", args.seconds), || {
            let ran = fuzz.run_target(target, args.seconds, &args.libfuzzer_args)?;
            let failure = ran.failure();
            outcome = Some(ran);
            match failure {
                Some(failure) => bail!("{failure}"),
                None => Ok(()),
            }
        });
        match outcome {
            // Failed or not, the other targets still run; the summary tells.
            Some(outcome) => results.push((target.clone(), outcome, started.elapsed())),
            // The fuzzer could not even be started.
            None => return result,
        }
    }

    say!(
        "\nxtask fuzz summary (build {}, sanitizer {SANITIZER})",
        cmd::format_duration(build_time)
    );
    say!(
        "  {:<20} {:>12} {:>10} {:>9} {:>8}  result",
        "target",
        "executions",
        "execs/s",
        "new units",
        "rss MB"
    );
    let show = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let mut failures = Vec::new();
    for (target, outcome, took) in &results {
        let result = match outcome.failure() {
            None => format!("ok in {}", cmd::format_duration(*took)),
            Some(failure) => format!("FAILED: {failure}"),
        };
        say!(
            "  {target:<20} {:>12} {:>10} {:>9} {:>8}  {result}",
            show(outcome.executions),
            show(outcome.execs_per_sec),
            show(outcome.new_units),
            show(outcome.peak_rss_mb)
        );
        if outcome.failure().is_some() {
            failures.push((target, outcome));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    for (target, outcome) in &failures {
        say!(
            "\n{target}: {}",
            outcome.reason.as_deref().unwrap_or("the target failed")
        );
        if let Some(path) = &outcome.reproducer {
            say!("  reproducer: {}", path.display());
            say!("  replay it:  {}", fuzz.replay_command(target, path));
        }
    }
    bail!(
        "{} fuzz target(s) failed: {}",
        failures.len(),
        failures
            .iter()
            .map(|(target, _)| target.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Where the fuzz crate and its builds live, and how cargo-fuzz is run.
struct Fuzz {
    fuzz_dir: PathBuf,
    target_dir: PathBuf,
    path: OsString,
}

impl Fuzz {
    fn new(tools: &Tools) -> Result<Self> {
        Ok(Self {
            fuzz_dir: paths::workspace_root().join("gateway/fuzz"),
            target_dir: fuzz_target_dir()?,
            path: tools.path_env()?,
        })
    }

    /// `cargo fuzz <subcommand>` with the tools on PATH and nightly flags
    /// allowed on the stable toolchain.
    fn cargo_fuzz(&self, subcommand: &str) -> Command {
        let mut command = Command::new("cargo");
        command
            .current_dir(paths::workspace_root())
            .env("PATH", &self.path)
            .env("RUSTC_BOOTSTRAP", "1")
            // No backtrace of cargo-fuzz's own "target failed" error; the
            // target's panics keep theirs (RUST_BACKTRACE).
            .env("RUST_LIB_BACKTRACE", "0")
            .args(["fuzz", subcommand, "--fuzz-dir"])
            .arg(&self.fuzz_dir);
        command
    }

    /// The same target flags for `build` and `run`, so `run` never rebuilds.
    fn build_flags(&self, command: &mut Command) {
        command
            .args(["--sanitizer", SANITIZER, "--target-dir"])
            .arg(&self.target_dir);
    }

    /// The targets of the fuzz crate, by name.
    fn list(&self) -> Result<Vec<String>> {
        let out = cmd::output(&mut self.cargo_fuzz("list"))?;
        let targets: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        if targets.is_empty() {
            bail!("{} has no fuzz targets", self.fuzz_dir.display());
        }
        Ok(targets)
    }

    fn build(&self, target: Option<&str>) -> Result<()> {
        let mut command = self.cargo_fuzz("build");
        self.build_flags(&mut command);
        command.args(target);
        cmd::run_to_stderr(&mut command)
    }

    /// Runs `target` for `seconds`; libFuzzer's progress lines are counted,
    /// everything else it says is passed through.
    fn run_target(&self, target: &str, seconds: u64, extra: &[String]) -> Result<Outcome> {
        let corpus = self.target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let seeds = self.fuzz_dir.join("corpus").join(target);
        let mut command = self.cargo_fuzz("run");
        self.build_flags(&mut command);
        // The first corpus dir is where libFuzzer writes new inputs.
        command.arg(target).arg(&corpus);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={TIMEOUT_SECS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg(format!("-max_len={MAX_LEN}"))
            .arg("-print_final_stats=1")
            .args(extra);
        let shown = cmd::display(&command);
        // cargo-fuzz's own stdout goes to our stderr too: stdout stays free.
        let to_stderr = {
            use std::os::fd::AsFd as _;
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot duplicate stderr")?
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(to_stderr))
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        let mut outcome = Outcome::default();
        let mut progress_lines = 0_u64;
        let mut last_progress = None;
        if let Some(output) = child.stderr.take() {
            let mut reader = BufReader::new(output);
            let mut ours = std::io::stderr().lock();
            let mut raw = Vec::new();
            loop {
                raw.clear();
                let read = reader
                    .read_until(b'\n', &mut raw)
                    .context("cannot read the fuzzer's output")?;
                if read == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end();
                if parse_line(line, &paths::workspace_root(), &mut outcome) {
                    progress_lines += 1;
                    last_progress = Some(line.to_owned());
                } else {
                    let _ = writeln!(ours, "{line}");
                }
            }
            if let Some(last) = last_progress {
                let _ = writeln!(ours, "{last}  ({progress_lines} progress lines not shown)");
            }
        }
        let status = child
            .wait()
            .with_context(|| format!("cannot wait for `{shown}`"))?;
        if !status.success() && outcome.reproducer.is_none() && outcome.reason.is_none() {
            outcome.reason = Some(format!("`{shown}` failed ({status})"));
        }
        Ok(outcome)
    }

    /// The command that replays one reproducer.
    fn replay_command(&self, target: &str, reproducer: &Path) -> String {
        format!(
            "RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir {} --sanitizer {SANITIZER} --target-dir {} {target} {}",
            self.fuzz_dir.display(),
            self.target_dir.display(),
            reproducer.display()
        )
    }
}

/// Reads one line of libFuzzer's output into `outcome` (`base`: the
/// directory cargo-fuzz ran in); true for the progress lines (`#1024 NEW cov: …`) that are not worth printing.
fn parse_line(line: &str, base: &Path, outcome: &mut Outcome) -> bool {
    let stat = |name: &str| -> Option<u64> {
        line.strip_prefix(name)?
            .trim_start_matches(':')
            .trim()
            .parse()
            .ok()
    };
    if let Some(n) = stat("stat::number_of_executed_units") {
        outcome.executions = Some(n);
    } else if let Some(n) = stat("stat::average_exec_per_sec") {
        outcome.execs_per_sec = Some(n);
    } else if let Some(n) = stat("stat::new_units_added") {
        outcome.new_units = Some(n);
    } else if let Some(n) = stat("stat::peak_rss_mb") {
        outcome.peak_rss_mb = Some(n);
    } else if let Some((_, path)) = line.split_once("Test unit written to ") {
        let path = PathBuf::from(path.trim());
        // Relative to where cargo-fuzz was started (the workspace root).
        outcome.reproducer = Some(if path.is_absolute() {
            path
        } else {
            base.join(path)
        });
    } else if line.contains("ERROR: libFuzzer:") || line.contains("ERROR: AddressSanitizer") {
        // The first cause wins: a panic's line comes before libFuzzer's
        // `deadly signal`.
        outcome.reason.get_or_insert_with(|| {
            line.trim_start_matches(|c: char| c == '=' || c.is_ascii_digit())
                .trim()
                .to_owned()
        });
    } else if line.contains("panicked at") {
        outcome.reason.get_or_insert_with(|| line.trim().to_owned());
    } else if let Some(rest) = line.strip_prefix('#') {
        return rest.starts_with(|c: char| c.is_ascii_digit()) || rest.starts_with("#####");
    } else {
        // `\tNEW_FUNC[1/2]: 0x…` after a progress line, and the recommended
        // dictionary (`"abc" # Uses: 3`) at the end.
        let trimmed = line.trim_start();
        return trimmed.starts_with("NEW_FUNC")
            || trimmed.starts_with("NEW_PC")
            || (trimmed.starts_with('"') && trimmed.contains("\" # Uses: "));
    }
    false
}

/// `$TREVEN_FUZZ_TARGET_DIR`, else `$HOME/.cache/treven/fuzz-target`.
fn fuzz_target_dir() -> Result<PathBuf> {
    match std::env::var_os("TREVEN_FUZZ_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => {
            let home = std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .context("neither TREVEN_FUZZ_TARGET_DIR nor HOME is set")?;
            Ok(PathBuf::from(home).join(".cache/treven/fuzz-target"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_final_stats_and_hides_progress() {
        let dir = Path::new("/repo/gateway/fuzz");
        let mut outcome = Outcome::default();
        for line in [
            "stat::number_of_executed_units: 123456",
            "stat::average_exec_per_sec:     6172",
            "stat::new_units_added:          42",
            "stat::peak_rss_mb:              88",
        ] {
            assert!(!parse_line(line, dir, &mut outcome));
        }
        for noise in [
            "#4096\tpulse  cov: 1234 ft: 5678 corp: 90/3Kb exec/s: 2048 rss: 60Mb",
            "\tNEW_FUNC[1/2]: 0x55ad6f711851",
            "###### Recommended dictionary. ######",
            "\"\\377\\377\" # Uses: 8",
        ] {
            assert!(parse_line(noise, dir, &mut outcome), "{noise}");
        }
        assert!(!parse_line("INFO: Seed: 1234", dir, &mut outcome));
        assert_eq!(outcome.executions, Some(123_456));
        assert_eq!(outcome.execs_per_sec, Some(6172));
        assert_eq!(outcome.new_units, Some(42));
        assert_eq!(outcome.peak_rss_mb, Some(88));
        assert_eq!(outcome.reproducer, None);
        assert_eq!(outcome.reason, None);
    }

    #[test]
    fn finds_the_reproducer_of_a_crash() {
        let dir = Path::new("/repo");
        let mut outcome = Outcome::default();
        for line in [
            "thread '<unnamed>' panicked at fuzz_targets/jwt_verify.rs:10:5:",
            "==1234== ERROR: libFuzzer: deadly signal",
            "artifact_prefix='/repo/gateway/fuzz/artifacts/jwt_verify/'; Test unit written to /repo/gateway/fuzz/artifacts/jwt_verify/crash-da39a3ee",
        ] {
            assert!(!parse_line(line, dir, &mut outcome));
        }
        assert_eq!(
            outcome.reproducer,
            Some(PathBuf::from(
                "/repo/gateway/fuzz/artifacts/jwt_verify/crash-da39a3ee"
            ))
        );
        assert_eq!(
            outcome.reason.as_deref(),
            Some("thread '<unnamed>' panicked at fuzz_targets/jwt_verify.rs:10:5:")
        );

        let mut relative = Outcome::default();
        parse_line(
            "artifact_prefix='gateway/fuzz/artifacts/path_template/'; Test unit written to gateway/fuzz/artifacts/path_template/timeout-abc",
            dir,
            &mut relative,
        );
        assert_eq!(
            relative.reproducer,
            Some(PathBuf::from(
                "/repo/gateway/fuzz/artifacts/path_template/timeout-abc"
            ))
        );
    }
}
