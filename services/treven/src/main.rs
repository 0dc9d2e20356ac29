//! `treven`: the one binary of the platform. It serves any set of roles
//! (`treven serve --target tenants` in ECS, `--target all` on a laptop) and
//! carries the operator commands.

mod admin;
mod admin_port;
mod retention;
mod roles;
mod serve;

use clap::{Parser, Subcommand};

/// Treven platform backend.
#[derive(Debug, Parser)]
#[command(name = "treven", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one or more roles until SIGTERM/SIGINT.
    Serve(serve::ServeArgs),
    /// Apply database migrations of the given roles and exit.
    Migrate(serve::MigrateArgs),
    /// Print a fresh key for every mesh principal, as TREVEN_MESH_SIGNING_KEYS=…
    /// and TREVEN_MESH_PUBLIC_KEYS=… lines (a local run; AWS generates its own).
    Keygen,
    /// Exit 0 if the gRPC server at ADDR reports SERVING (container health check).
    Healthcheck(serve::HealthcheckArgs),
    /// Operator commands against the stores.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Keygen => {
            // A fresh key for every principal, as the two variables of a
            // local run (`export $(treven keygen)`).
            for (name, value) in treven_mesh::keys::MeshKeys::generate().env() {
                println!("{name}={value}");
            }
            Ok(())
        }
        Command::Healthcheck(args) => serve::healthcheck(args).await,
        Command::Admin(command) => admin::run(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("treven: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
