//! `cargo xtask dev`: the whole local mesh, up until Ctrl-C.
//!
//! 1. tools bootstrap, Postgres + Redis (started if installed), database
//!    `treven_local`;
//! 2. `cargo build -p treven`;
//! 3. moto on 127.0.0.1:$TREVEN_MOTO_PORT (log in target/dev/moto.log) and
//!    the AWS resources from `xtask/dev_aws.py provision`;
//! 4. `treven migrate`, then `treven serve --target all`;
//! 5. a demo organisation and user, and a banner with endpoints and examples.
//!
//! Ctrl-C, SIGTERM or SIGHUP stops treven, then moto (each with its whole
//! process group), waits for both and exits; nothing it started is left.
//! Postgres and Redis are shared daemons and stay up.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use tokio::process::Command;

use crate::process::{self, GroupChild, PidFile, StopSignals};
use crate::state::{self, CognitoState, DevState};
use crate::tools::Tools;
use crate::{cmd, paths, services, token, treven};

/// The region every dev resource lives in.
pub const REGION: &str = "eu-west-2";
/// Where `treven serve --target all` serves the tenants service.
pub const TENANTS_ADDR: &str = "127.0.0.1:50051";
/// How long treven may drain after SIGTERM: above its default
/// `TREVEN_SHUTDOWN_GRACE_SECS` (20 s), so it is never killed mid-drain.
const TREVEN_GRACE: Duration = Duration::from_secs(25);
/// moto has nothing to drain.
const MOTO_GRACE: Duration = Duration::from_secs(5);
/// Organisation and user that the banner's grpcurl example acts as.
const DEMO_ORG: &str = "demo";
const DEMO_EMAIL: &str = "analyst@demo.local";

/// The admin port of `treven serve --target all` (`/metrics`, `/healthz`):
/// fixed here so it can be bookmarked (a bare `treven serve` picks a free one).
pub const ADMIN_ADDR: &str = "127.0.0.1:9464";

/// The services of the mesh and their local ports, for the banner.
const MESH_ENDPOINTS: &[(&str, &str, &str)] = &[
    ("gateway", "127.0.0.1:8080", "REST /api + gRPC-web"),
    ("gateway-ws", "127.0.0.1:8081", "WebSocket /ws"),
    ("tenants", TENANTS_ADDR, "gRPC"),
    ("documents", "127.0.0.1:50052", "gRPC"),
    ("reports", "127.0.0.1:50053", "gRPC"),
    ("agents", "127.0.0.1:50054", "gRPC"),
    ("admin", ADMIN_ADDR, "/metrics, /healthz"),
];

/// Options of `cargo xtask dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port of the moto server (the AWS emulator).
    #[arg(long, env = "TREVEN_MOTO_PORT", default_value_t = 5000)]
    pub moto_port: u16,
    /// Use target/debug/treven as it is instead of running `cargo build -p treven`.
    #[arg(long)]
    pub no_build: bool,
}

/// Runs the dev stack until a stop signal.
pub fn run(args: &DevArgs) -> Result<()> {
    let tools = Tools::locate()?;
    let (result, _) = cmd::step("tools", || tools.ensure());
    result?;
    let (result, _) = cmd::step("postgres + redis", || {
        services::ensure_postgres_and_redis()?;
        services::ensure_database(services::DEV_DATABASE)
    });
    result?;

    let dev_dir = paths::dev_dir();
    fs::create_dir_all(&dev_dir).with_context(|| format!("cannot create {}", dev_dir.display()))?;
    let pid_path = dev_dir.join("pids.json");
    process::stop_leftovers(&pid_path)?;
    let moto_addr = format!("127.0.0.1:{}", args.moto_port);
    for (addr, what) in [
        (moto_addr.as_str(), "moto (set TREVEN_MOTO_PORT to move it)"),
        (TENANTS_ADDR, "tenants"),
    ] {
        if services::answers(addr) {
            anyhow::bail!(
                "{addr} is already in use, so {what} cannot listen there: is another \
                 `cargo xtask dev` running? (see `ss -ltnp`)"
            );
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let mut signals = StopSignals::install()?;
        let mut stack = Stack::new(pid_path);
        let result = start_and_supervise(args, &tools, &moto_addr, &mut stack, &mut signals).await;
        say!("==> stopping the dev stack");
        stack.stop(&mut signals).await;
        say!("<== stopped: nothing left running");
        result.map(|_| ())
    })
}

/// The long-lived children, stopped in reverse order of start, each with
/// the time it gets between SIGTERM and SIGKILL.
pub struct Stack {
    children: Vec<(GroupChild, Duration)>,
    pids: PidFile,
    pid_path: std::path::PathBuf,
}

impl Stack {
    /// An empty stack whose pids are recorded in `pid_path`.
    pub fn new(pid_path: std::path::PathBuf) -> Self {
        Self {
            children: Vec::new(),
            pids: PidFile::default(),
            pid_path,
        }
    }

    /// Adds a started child; it is stopped with `grace` by [`Stack::stop`].
    pub fn push(
        &mut self,
        child: GroupChild,
        marker: &str,
        grace: Duration,
    ) -> Result<&mut GroupChild> {
        let pid = child.pid();
        self.children.push((child, grace));
        self.pids.record(&self.pid_path, marker, pid)?;
        self.children
            .last_mut()
            .map(|(child, _)| child)
            .context("the stack is empty")
    }

    /// The pid of the child called `name`.
    pub fn pid_of(&self, name: &str) -> Option<i32> {
        self.children
            .iter()
            .find(|(child, _)| child.name() == name)
            .and_then(|(child, _)| child.pid())
    }

    /// Stops every child, newest first.
    pub async fn stop(&mut self, signals: &mut StopSignals) {
        while let Some((mut child, grace)) = self.children.pop() {
            if let Err(err) = child.stop(grace, signals).await {
                say!("    could not stop {}: {err:#}", child.name());
            }
        }
        let _ = fs::remove_file(&self.pid_path);
    }
}

/// What `dev_aws.py provision` prints.
#[derive(Debug, Deserialize)]
struct Provisioned {
    bucket: String,
    tables: BTreeMap<String, String>,
    user_pool_id: String,
    client_id: String,
    issuer: String,
    jwks_url: String,
    secret_name: String,
}

/// One `treven serve` process of a stack.
#[derive(Debug, Clone)]
pub struct ServeProcess {
    /// Name in logs and the pid file.
    pub name: &'static str,
    /// `--target` of `treven serve`.
    pub targets: &'static str,
    /// Environment on top of [`treven::env`] (later entries win).
    pub env: Vec<(&'static str, String)>,
    /// An address it listens on once it is up.
    pub wait_addr: String,
}

/// How to bring a stack up: what to build, where moto listens, which
/// `treven serve` processes to run.
#[derive(Debug, Clone)]
pub struct StackPlan {
    /// Arguments of `cargo build` (none: use what is built).
    pub build: Option<Vec<&'static str>>,
    /// Port of moto.
    pub moto_port: u16,
    /// `--env` of the AWS resources (names end in it).
    pub env_name: &'static str,
    /// Postgres database of tenants and reports.
    pub database_url: String,
    /// The serve processes, started in order.
    pub processes: Vec<ServeProcess>,
}

/// The dev stack's plan: one `treven serve --target all` on the default ports.
fn dev_plan(args: &DevArgs) -> StackPlan {
    StackPlan {
        build: (!args.no_build).then(|| vec!["build", "-p", "treven"]),
        moto_port: args.moto_port,
        env_name: "local",
        database_url: services::DEV_DATABASE_URL.into(),
        processes: vec![ServeProcess {
            name: "treven",
            targets: "all",
            env: vec![("TREVEN_ADMIN_ADDR", ADMIN_ADDR.to_owned())],
            wait_addr: TENANTS_ADDR.into(),
        }],
    }
}

async fn start_and_supervise(
    args: &DevArgs,
    tools: &Tools,
    moto_addr: &str,
    stack: &mut Stack,
    signals: &mut StopSignals,
) -> Result<&'static str> {
    let plan = dev_plan(args);
    debug_assert_eq!(moto_addr, format!("127.0.0.1:{}", plan.moto_port));
    let state = bring_up(&plan, tools, stack, signals).await?;
    let example = demo_context_command(tools, &state);
    print_banner(tools, &state, &example);

    // Supervise: a stop signal ends the stack; so does any child exiting.
    let ended = {
        let mut waits = Vec::new();
        for (child, _) in &mut stack.children {
            waits.push(Box::pin(async move {
                let status = child.wait().await;
                (child.name().to_owned(), status)
            }));
        }
        let any_exit = futures_select_all(waits);
        tokio::select! {
            signal = signals.recv() => Ok(signal),
            (name, status) = any_exit => Err(anyhow::anyhow!("{name} exited unexpectedly ({})", describe(status))),
        }
    };
    if let Ok(signal) = &ended {
        say!("    {signal} received");
    }
    ended
}

/// Builds (when asked), starts moto, provisions the AWS resources, migrates
/// and starts every serve process of `plan`; returns the stack's state
/// (also saved to `state.json` in [`paths::dev_dir`]).
pub async fn bring_up(
    plan: &StackPlan,
    tools: &Tools,
    stack: &mut Stack,
    signals: &mut StopSignals,
) -> Result<DevState> {
    let root = paths::workspace_root();
    if let Some(build) = &plan.build {
        let shown = format!("cargo {}", build.join(" "));
        timed(&shown, async {
            let mut cargo = Command::new("cargo");
            cargo
                .args(build)
                .current_dir(&root)
                .stdin(std::process::Stdio::null());
            process::run_to_end(&shown, &mut cargo, signals).await
        })
        .await?;
    }

    let moto_addr = format!("127.0.0.1:{}", plan.moto_port);
    let endpoint = format!("http://{moto_addr}");
    timed("moto", async {
        let log_path = paths::dev_dir().join("moto.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log.try_clone().context("cannot share the moto log")?;
        let port = plan.moto_port.to_string();
        let mut moto = Command::new(tools.venv_bin().join("moto_server"));
        moto.args(["-H", "127.0.0.1", "-p", &port])
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let moto = GroupChild::spawn("moto_server", &mut moto)?;
        let moto = stack.push(moto, "moto_server", MOTO_GRACE)?;
        process::wait_for_port(&moto_addr, Duration::from_secs(30), moto, signals).await?;
        say!("    moto on {endpoint}, log {}", log_path.display());
        Ok(())
    })
    .await?;

    let previous = state::load().unwrap_or_default().unwrap_or_default();
    let (mesh_signing_keys, mesh_public_keys) =
        if previous.mesh_signing_keys.is_empty() || previous.mesh_public_keys.is_empty() {
            treven::keygen()?
        } else {
            (
                previous.mesh_signing_keys.clone(),
                previous.mesh_public_keys.clone(),
            )
        };
    let provisioned: Provisioned = timed("aws resources", async {
        let mut python = Command::new(tools.python());
        python
            .arg(paths::dev_aws_script())
            .arg("provision")
            .arg("--tables")
            .arg(root.join("deploy/resources/dynamodb-tables.json"))
            .args(["--env", plan.env_name])
            .args(["--bucket", &format!("treven-data-{}", plan.env_name)])
            .args([
                "--pool-name",
                &format!("treven-{}", plan.env_name),
                "--secret-name",
                &format!("treven/{}/mesh-signing-keys", plan.env_name),
            ])
            .envs(treven::aws_env(&endpoint, REGION))
            .env("TREVEN_MESH_SIGNING_KEYS", &mesh_signing_keys)
            .stdin(std::process::Stdio::null());
        let out = process::output_to_end("dev_aws.py provision", &mut python, signals).await?;
        serde_json::from_str(out.trim()).with_context(|| format!("dev_aws.py printed {out:?}"))
    })
    .await?;

    let mut state = DevState {
        aws_endpoint_url: endpoint.clone(),
        aws_region: REGION.into(),
        data_bucket: provisioned.bucket,
        documents_table: table(&provisioned.tables, "documents")?,
        agents_table: table(&provisioned.tables, "agents")?,
        cognito: CognitoState {
            user_pool_id: provisioned.user_pool_id,
            client_id: provisioned.client_id,
            issuer: provisioned.issuer,
            jwks_url: provisioned.jwks_url,
        },
        mesh_key_secret: provisioned.secret_name,
        mesh_signing_keys,
        mesh_public_keys,
        // The URL the tenants service logs in with: its login role, which
        // `treven migrate` (as the owner in `plan.database_url`) creates.
        tenants_database_url: treven::with_user(&plan.database_url, treven::TENANTS_LOGIN_ROLE),
        redis_url: services::REDIS_URL.into(),
        endpoints: MESH_ENDPOINTS
            .iter()
            .map(|(name, addr, _)| ((*name).to_owned(), (*addr).to_owned()))
            .collect(),
        users: previous.users,
    };
    state.endpoints.insert("moto".into(), endpoint.clone());
    state::save(&state)?;

    timed("treven migrate", async {
        let mut migrate: Command = treven::owner_command(&state)?.into();
        migrate.arg("migrate").stdin(std::process::Stdio::null());
        process::run_to_end("treven migrate", &mut migrate, signals).await
    })
    .await?;

    for serve in &plan.processes {
        timed(&format!("treven serve --target {}", serve.targets), async {
            let mut command: Command = treven::command(&state)?.into();
            command
                .args(["serve", "--target", serve.targets])
                .envs(serve.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null());
            let child = GroupChild::spawn(serve.name, &mut command)?;
            let child = stack.push(child, serve.name, TREVEN_GRACE)?;
            process::wait_for_port(&serve.wait_addr, Duration::from_secs(60), child, signals).await
        })
        .await?;
    }
    Ok(state)
}

fn describe(status: Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(err) => format!("{err:#}"),
    }
}

/// Resolves when the first of `futures` does (a tiny `select_all`, to avoid
/// a dependency for one use).
async fn futures_select_all<F, T>(mut futures: Vec<std::pin::Pin<Box<F>>>) -> T
where
    F: std::future::Future<Output = T>,
{
    std::future::poll_fn(move |cx| {
        for future in &mut futures {
            if let std::task::Poll::Ready(value) = future.as_mut().poll(cx) {
                return std::task::Poll::Ready(value);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Runs one async step, printing its start and duration like [`cmd::step`].
pub async fn timed<T>(name: &str, body: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    say!("==> {name}");
    let started = std::time::Instant::now();
    let result = body.await;
    let took = cmd::format_duration(started.elapsed());
    match &result {
        Ok(_) => say!("<== {name}: ok in {took}"),
        Err(_) => say!("<== {name}: FAILED after {took}"),
    }
    result
}

fn table(tables: &BTreeMap<String, String>, id: &str) -> Result<String> {
    tables.get(id).cloned().with_context(|| {
        format!("deploy/resources/dynamodb-tables.json has no table with id {id:?}")
    })
}

/// Creates the demo organisation and user (in Cognito and tenants) and
/// returns a shell command that mints a mesh context token for them, or a
/// note on why it could not.
fn demo_context_command(tools: &Tools, state: &DevState) -> std::result::Result<String, String> {
    let request = token::UserRequest {
        org: DEMO_ORG,
        kind: "ngo",
        email: DEMO_EMAIL,
        name: "Demo Analyst",
        role: "analyst",
    };
    let user = token::sign_in(state, tools, &request).map_err(|err| format!("{err:#}"))?;
    Ok(format!(
        "TREVEN_ENV=local TREVEN_MESH_SIGNING_KEYS='{}' TREVEN_MESH_PUBLIC_KEYS='{}' TREVEN_TENANTS_URL=http://{} {} admin mint-context --org-id {} --user-id {} --role analyst --audience reports --reason 'dev stack'",
        state.mesh_signing_keys,
        state.mesh_public_keys,
        state
            .endpoints
            .get("tenants")
            .map_or(TENANTS_ADDR, String::as_str),
        relative_to_root(&paths::treven_binary()),
        user.org_id,
        user.sub,
    ))
}

fn relative_to_root(path: &Path) -> String {
    path.strip_prefix(paths::workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn print_banner(tools: &Tools, state: &DevState, example: &std::result::Result<String, String>) {
    let mut text =
        String::from("\nTreven dev stack is up. Ctrl-C stops treven and moto.\n\nEndpoints\n");
    for (name, addr, what) in MESH_ENDPOINTS {
        let up = if services::answers(addr) {
            "up"
        } else {
            "not served yet"
        };
        text.push_str(&format!("  {name:<11} {addr:<17} {what:<22} {up}\n"));
    }
    text.push_str(&format!(
        "  {:<11} {:<17} {:<22} log {}\n",
        "moto (AWS)",
        state.aws_endpoint_url.trim_start_matches("http://"),
        "S3, DynamoDB, Cognito",
        relative_to_root(&paths::dev_dir().join("moto.log")),
    ));
    text.push_str(&format!(
        "  {:<11} {}\n",
        "postgres", state.tenants_database_url
    ));
    text.push_str(&format!("  {:<11} {}\n", "redis", state.redis_url));
    text.push_str(&format!(
        "  {:<11} {} (pool {}, client {}, mesh key)\n",
        "state",
        relative_to_root(&state::path()),
        state.cognito.user_pool_id,
        state.cognito.client_id,
    ));
    text.push_str(&format!(
        "\nTools (grpcurl, buf, moto_server, cfn-lint, hadolint) on your PATH:\n  export PATH=\"{}:{}:$PATH\"\n",
        tools.venv_bin().display(),
        tools.node_bin().display(),
    ));
    text.push_str(&format!(
        "\nTry\n  grpcurl -plaintext {TENANTS_ADDR} list\n"
    ));
    match example {
        Ok(mint) => text.push_str(&format!(
            "  grpcurl -plaintext -H \"x-treven-context: $({mint})\" -d '{{}}' {TENANTS_ADDR} treven.tenants.v1.TenantsService/GetMe\n"
        )),
        Err(why) => text.push_str(&format!("  (no demo user for a GetMe example: {why})\n")),
    }
    text.push_str(
        "\nA Cognito ID token (what the gateway takes, carries custom:orgId), and a REST call with it:\n  \
         TOKEN=$(cargo xtask token --email you@example.org --org demo --role analyst)\n  \
         curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/me\n  \
         API docs: http://127.0.0.1:8080/docs (OpenAPI: /openapi.json)\n\
         \nMetrics (Prometheus text; docs/observability.md):\n  \
         curl http://127.0.0.1:8080/metrics      # every role of the process\n  \
         curl http://127.0.0.1:9464/metrics      # the same, on the admin port\n",
    );
    // Like `say!`: a closed stdout must not stop the stack from running.
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}
