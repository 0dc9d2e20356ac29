//! `cargo xtask prodlike`: boots the production shape on this machine and
//! runs the analyst journey through it — the `prodlike` end-to-end test
//! (`tests/tests/prodlike.rs`, which `cargo xtask test` also runs).
//!
//! Every task of `deploy/cdk.out/Treven-prod.template.json` runs as its own
//! `treven` process with its own command, environment and secrets against
//! TLS-only Postgres and Redis stand-ins, moto and the Bedrock fake
//! (docs/testing.md, "The production shape"). Steps: the tools, Postgres and
//! Redis; `bash deploy/ci.sh` (the template; `--skip-deploy` reuses
//! deploy/cdk.out); `cargo build -p treven`; then the test. With `--hold`
//! the stack stays up after the journey (addresses and log directory
//! printed, each task's environment written next to its log) until Ctrl-C.

use anyhow::Result;
use clap::Args;

use crate::test::TestEnv;
use crate::tools::{self, Tools};
use crate::{cmd, services};

/// Options of `cargo xtask prodlike`.
#[derive(Debug, Args)]
pub struct ProdlikeArgs {
    /// Keep the stack up after the journey, until Ctrl-C.
    #[arg(long)]
    pub hold: bool,
    /// Do not run `bash deploy/ci.sh`: use the template already in
    /// deploy/cdk.out.
    #[arg(long)]
    pub skip_deploy: bool,
}

/// Runs the steps above.
pub fn run(args: &ProdlikeArgs) -> Result<()> {
    let tools = Tools::locate()?;
    let env = TestEnv::new(&tools)?;
    let (result, _) = cmd::step("tools, Postgres and Redis", || {
        tools.ensure()?;
        tools.ensure_test_tools()?;
        tools::ensure_nextest()?;
        services::ensure_postgres_and_redis()
    });
    result?;
    if !args.skip_deploy {
        let (result, _) = cmd::step("bash deploy/ci.sh (the CDK template)", || {
            cmd::run(env.command("bash").arg("deploy/ci.sh"))
        });
        result?;
    }
    let (result, _) = cmd::step("cargo build -p treven", || {
        cmd::run(env.command("cargo").args(["build", "-p", "treven"]))
    });
    result?;
    let (result, _) = cmd::step("the prodlike test", || {
        if args.hold {
            // cargo test, not nextest, so Ctrl-C reaches the test, which
            // then stops every process it started.
            cmd::run(
                env.command("cargo")
                    .args(["test", "-p", "treven-e2e", "--test", "prodlike"])
                    .args(["--", "--nocapture"])
                    .env("TREVEN_PRODLIKE_HOLD", "1")
                    .env("TREVEN_PRODLIKE_KEEP_LOGS", "1"),
            )
        } else {
            cmd::run(env.command("cargo").args([
                "nextest",
                "run",
                "-p",
                "treven-e2e",
                "--test",
                "prodlike",
                "--no-capture",
            ]))
        }
    });
    result
}
