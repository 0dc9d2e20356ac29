//! `cargo xtask bench`: the platform measured against its own baselines,
//! side by side in one run on this machine.
//!
//! Builds `treven` and the `treven-load` generator with the `perf` profile
//! (release code, line tables for `perf`), brings up a stack of separate
//! processes (services, a Bedrock-backed agents service, the gateway, moto,
//! a Bedrock fake) in `target/bench/stack`, then measures each row as an
//! A/B pair, alternating A and B for `--repetitions` rounds and taking the
//! median of each. Prints one table, writes `target/bench/bench.json`,
//! `bench.md` (the table with its machine line, what `--readme` puts into
//! README.md) and, when matplotlib can be installed into the tools venv,
//! `bench.png`.
//!
//! `--smoke` (what `cargo xtask test` runs) measures every row once,
//! briefly, with the debug binaries, into `target/bench-smoke`, asserting
//! no goal: a row that cannot be measured still fails it.
//!
//! This file is the orchestration (build, stack, sign-in, which rows run);
//! the rows are in `rows`, the tools they run in `load`, rows 6 and 7's
//! pgbench scripts in `sql`, and the table, JSON and chart in `report`.

mod load;
mod perf;
mod report;
mod rows;
mod sql;

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use tokio::process::Command;

use self::load::{PGBENCH_DATABASE, PROFILE, argv, load, load_binary};
use self::report::{RunInfo, report, write_readme};
use crate::dev::{self, ServeProcess, Stack, StackPlan};
use crate::process::{GroupChild, StopSignals};
use crate::state::DevState;
use crate::tools::Tools;
use crate::{cmd, paths, services, token, treven};

/// The bench stack's database (dropped and created fresh each run).
const DATABASE: &str = "treven_bench";
const SERVICES: [(&str, &str); 4] = [
    ("TREVEN_TENANTS_ADDR", "127.0.0.1:50151"),
    ("TREVEN_DOCUMENTS_ADDR", "127.0.0.1:50152"),
    ("TREVEN_REPORTS_ADDR", "127.0.0.1:50153"),
    ("TREVEN_AGENTS_ADDR", "127.0.0.1:50154"),
];
const BEDROCK_AGENTS_ADDR: &str = "127.0.0.1:50164";
const GATEWAY_ADDR: &str = "127.0.0.1:8180";
const GATEWAY_WS_ADDR: &str = "127.0.0.1:8181";

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rounds of each A/B pair; the table shows medians.
    #[arg(long, default_value_t = 5)]
    pub repetitions: usize,
    /// Measured seconds of each load run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Idle WebSocket connections of row 4.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Use the `perf` binaries as they are instead of building them.
    #[arg(long)]
    pub no_build: bool,
    /// Measure only these rows (repeatable, e.g. `--only 4 --only 5`); all
    /// when unset. Rows 1 and 2 are measured together.
    #[arg(long)]
    pub only: Vec<u8>,
    /// Port of the bench stack's moto.
    #[arg(long, default_value_t = 5100)]
    pub moto_port: u16,
    /// One short round of every row with the debug binaries, into
    /// `target/bench-smoke`, no goal asserted: what `cargo xtask test` runs
    /// so the bench cannot rot (CI never builds release code).
    #[arg(long)]
    pub smoke: bool,
    /// A shared library to preload (`LD_PRELOAD`) into every `treven`
    /// process of the stack and row 8, e.g. another allocator
    /// (`/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`), to measure it
    /// without rebuilding.
    #[arg(long)]
    pub preload: Option<String>,
    /// Only rewrite README.md's benchmark table from
    /// `target/bench/bench.json` (no measuring).
    #[arg(long)]
    pub readme: bool,
    /// Record each row with a system-wide `perf record` into
    /// `target/bench/perf/row-N.data`, split by process and kind of work
    /// into `row-N.txt` (see `xtask/bench/perf_split.py`).
    #[arg(long)]
    pub perf: bool,
}

impl BenchArgs {
    /// The smoke run of `cargo xtask test` (see `--smoke`).
    pub fn smoke() -> Self {
        Self {
            repetitions: 1,
            seconds: 0.5,
            connections: 200,
            no_build: false,
            only: Vec::new(),
            moto_port: 5190,
            smoke: true,
            preload: None,
            readme: false,
            perf: false,
        }
    }

    /// Whether any of `rows` is to be measured.
    fn wants(&self, rows: &[u8]) -> bool {
        self.only.is_empty() || rows.iter().any(|row| self.only.contains(row))
    }
}

/// Runs the bench (see the module docs).
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.readme {
        return write_readme(&paths::target_dir().join("bench").join("bench.json"));
    }
    // `--smoke` from the command line measures what `cargo xtask test` does.
    let smoke;
    let args = if args.smoke {
        smoke = BenchArgs {
            no_build: args.no_build,
            only: args.only.clone(),
            preload: args.preload.clone(),
            ..BenchArgs::smoke()
        };
        &smoke
    } else {
        args
    };
    let tools = Tools::locate()?;
    let (result, _) = cmd::step("tools", || tools.ensure());
    result?;
    let (result, _) = cmd::step("postgres + redis + databases", || {
        services::ensure_postgres_and_redis()?;
        fresh_database(DATABASE)?;
        fresh_database(PGBENCH_DATABASE)?;
        cmd::run_to_stderr(std::process::Command::new("pgbench").args([
            "-i",
            "-q",
            "-s",
            // The smoke run needs the tables, not a realistic size.
            if args.smoke { "1" } else { "10" },
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            PGBENCH_DATABASE,
        ]))
    });
    result?;

    let (bench_dir, profile) = if args.smoke {
        (paths::target_dir().join("bench-smoke"), "debug")
    } else {
        (paths::target_dir().join("bench"), PROFILE)
    };
    paths::use_stack_layout(bench_dir.join("stack"), profile);
    fs::create_dir_all(paths::dev_dir())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let mut signals = StopSignals::install()?;
        let mut stack = Stack::new(paths::dev_dir().join("pids.json"));
        let result = measure(args, &tools, &mut stack, &mut signals, &bench_dir).await;
        say!("==> stopping the bench stack");
        stack.stop(&mut signals).await;
        result
    })
}

fn fresh_database(name: &str) -> Result<()> {
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        cmd::run(std::process::Command::new("psql").args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            &sql,
        ]))?;
    }
    Ok(())
}

async fn measure(
    args: &BenchArgs,
    tools: &Tools,
    stack: &mut Stack,
    signals: &mut StopSignals,
    bench_dir: &std::path::Path,
) -> Result<()> {
    if !args.no_build {
        let profile = paths::profile_dir();
        // `--profile dev` builds into `debug`.
        let cargo_profile = if profile == "debug" { "dev" } else { profile };
        dev::timed(
            &format!("cargo build --profile {cargo_profile} (treven, treven-load)"),
            async {
                let mut cargo = Command::new("cargo");
                cargo.args(["build", "--profile", cargo_profile]);
                if args.smoke {
                    // The workspace's feature set, as the test steps before
                    // it use, rather than two packages' own (which would
                    // rebuild shared dependencies with other features).
                    cargo.arg("--workspace");
                } else {
                    cargo.args(["-p", "treven", "-p", "treven-e2e"]);
                }
                cargo
                    .args(["--bin", "treven", "--bin", "treven-load"])
                    .current_dir(paths::workspace_root())
                    .stdin(std::process::Stdio::null());
                crate::process::run_to_end("cargo build", &mut cargo, signals).await
            },
        )
        .await?;
    }

    // The Bedrock fake first: the Bedrock-backed agents service needs its address.
    let mut fake = Command::new(load_binary());
    // The smoke run only checks that row 5 works: a short first token.
    let first_token_ms = if args.smoke { "100" } else { "1000" };
    fake.args(["bedrock-fake", "--first-token-ms", first_token_ms])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null());
    let (fake_child, endpoint) = spawn_printing(&mut fake, "bedrock-fake").await?;
    stack.push(fake_child, "bedrock-fake", Duration::from_secs(2))?;
    let bedrock = endpoint["endpoint"]
        .as_str()
        .context("the fake printed no endpoint")?
        .to_owned();

    let service_urls: Vec<(&'static str, String)> = vec![
        ("TREVEN_TENANTS_URL", format!("http://{}", SERVICES[0].1)),
        ("TREVEN_DOCUMENTS_URL", format!("http://{}", SERVICES[1].1)),
        ("TREVEN_REPORTS_URL", format!("http://{}", SERVICES[2].1)),
        ("TREVEN_AGENTS_URL", format!("http://{}", SERVICES[3].1)),
    ];
    let quiet: Vec<(&'static str, String)> = vec![
        ("RUST_LOG", "warn".into()),
        ("TREVEN_LOG_FORMAT", "json".into()),
    ];
    let mut services_env = quiet.clone();
    if let Some(library) = &args.preload {
        say!("    preloading {library} into the treven processes");
        services_env.push(("LD_PRELOAD", library.clone()));
    }
    services_env.extend(SERVICES.iter().map(|(k, v)| (*k, (*v).to_owned())));
    services_env.extend(service_urls.clone());
    let mut bedrock_agents_env = services_env.clone();
    bedrock_agents_env.extend([
        ("TREVEN_AGENTS_ADDR", BEDROCK_AGENTS_ADDR.to_owned()),
        ("TREVEN_MODEL_PRIMARY", "bedrock".to_owned()),
        ("TREVEN_MODEL_SECONDARY", "none".to_owned()),
        ("TREVEN_BEDROCK_ENDPOINT", bedrock.clone()),
    ]);
    let mut gateway_env = services_env.clone();
    gateway_env.extend([
        ("TREVEN_GATEWAY_ADDR", GATEWAY_ADDR.to_owned()),
        ("TREVEN_GATEWAY_WS_ADDR", GATEWAY_WS_ADDR.to_owned()),
        // Chat goes to the Bedrock-backed agents (row 5); reports still
        // generate with the offline model of the services process.
        ("TREVEN_AGENTS_URL", format!("http://{BEDROCK_AGENTS_ADDR}")),
        // The bench measures the gateway, not the rate limiter's verdicts.
        ("TREVEN_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("TREVEN_ORG_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("TREVEN_WS_MAX_CONNECTIONS", "20000".to_owned()),
    ]);
    let plan = StackPlan {
        build: None,
        moto_port: args.moto_port,
        env_name: "bench",
        database_url: format!("postgres://postgres@127.0.0.1:5432/{DATABASE}"),
        processes: vec![
            ServeProcess {
                name: "services",
                targets: "tenants,documents,reports,agents",
                env: services_env.clone(),
                wait_addr: SERVICES[3].1.into(),
            },
            ServeProcess {
                name: "agents-bedrock",
                targets: "agents",
                env: bedrock_agents_env,
                wait_addr: BEDROCK_AGENTS_ADDR.into(),
            },
            ServeProcess {
                name: "gateway",
                targets: "gateway",
                env: gateway_env,
                wait_addr: GATEWAY_WS_ADDR.into(),
            },
        ],
    };
    let state = dev::bring_up(&plan, tools, stack, signals).await?;
    let gateway_pid = stack.pid_of("gateway").context("the gateway's pid")?;

    let user = token::sign_in(
        &state,
        tools,
        &token::UserRequest {
            org: "bench",
            kind: "ngo",
            email: "bench@bench.local",
            name: "Bench Analyst",
            role: "analyst",
        },
    )?;
    let context = mint_context(&state, &user, "reports")?;
    let tenants_context = mint_context(&state, &user, "tenants")?;
    let agents_context = mint_context(&state, &user, "agents")?;
    let gw = format!("http://{GATEWAY_ADDR}");
    let bearer = [("TREVEN_LOAD_BEARER", user.id_token.clone())];
    let setup = load(argv(&["setup", "--gateway", &gw]), bearer.to_vec()).await?;
    let (report_id, conversation_id) = (
        setup["report_id"]
            .as_str()
            .context("setup printed no report id")?
            .to_owned(),
        setup["conversation_id"]
            .as_str()
            .context("setup printed no conversation id")?
            .to_owned(),
    );
    say!("    report {report_id}, conversation {conversation_id}");
    let report_version = latest_version(&report_id)?;

    let report_url = format!("{gw}/api/reports/{report_id}");
    let reports_addr = SERVICES[2].1;
    let tenants_addr = SERVICES[0].1;
    let secs = args.seconds.to_string();
    let ctx = [("TREVEN_LOAD_CONTEXT", context.clone())];

    // Row 3 builds the gateway in the load generator's process: it needs
    // the gateway's environment, plus the token and a context of the user.
    let auth_env: Vec<(&'static str, String)> = treven::env(&state)
        .into_iter()
        .chain(quiet.clone())
        .chain(service_urls.clone())
        .chain(bearer_and_context(&user.id_token, &context))
        .chain([
            ("TREVEN_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
            ("TREVEN_ORG_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ])
        .collect();
    let stack_env = treven::env(&state);
    let stack_var = |name: &str| -> Result<String> {
        stack_env
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
            .with_context(|| format!("the stack's environment has no {name}"))
    };
    let mut agents_ctx = vec![("TREVEN_LOAD_CONTEXT", agents_context)];
    for name in [
        "TREVEN_MESH_SIGNING_KEYS",
        "TREVEN_MESH_PUBLIC_KEYS",
        "TREVEN_ENV",
    ] {
        if let Ok(value) = stack_var(name) {
            agents_ctx.push((name, value));
        }
    }
    let inputs = rows::RowInputs {
        rounds: args.repetitions.max(1),
        seconds: args.seconds,
        secs,
        // The smoke run's loads are short: so is their warm-up.
        warmup: if args.smoke { "0.2" } else { "1" }.to_owned(),
        connections: args.connections,
        ws_hold: if args.smoke { "0.5" } else { "5" }.to_owned(),
        settle: if args.smoke { "0.2" } else { "2" }.to_owned(),
        preload: args.preload.clone(),
        ws_url: format!("ws://{GATEWAY_WS_ADDR}/ws"),
        gateway_pid,
        tenants_addr,
        reports_addr,
        agents_addr: SERVICES[3].1,
        reports_database_url: stack_var("TREVEN_REPORTS_DATABASE_URL")?,
        tenants_database_url: stack_var("TREVEN_TENANTS_DATABASE_URL")?,
        report_id,
        report_version,
        org_id: user.org_id.clone(),
        sub: user.sub.clone(),
        report_url,
        conversation_id,
        bedrock,
        bearer: bearer.to_vec(),
        ctx: ctx.to_vec(),
        tenants_ctx: vec![("TREVEN_LOAD_CONTEXT", tenants_context)],
        agents_ctx,
        auth_env,
        quiet,
        state: &state,
        bench_dir,
        gw,
    };
    let mut rows = Vec::new();
    // A row that cannot be measured is reported and the others still run.
    let mut failures: Vec<String> = Vec::new();
    // Each row in turn, recorded when `--perf` asks (rows 1 and 2 are
    // measured together and share row 1's recording).
    macro_rules! measure_row {
        ($numbers:expr, $row:path) => {
            if args.wants(&$numbers) {
                let recording = perf::Recording::start(args.perf, bench_dir, $numbers[0]).await?;
                $row(&inputs, &mut rows, &mut failures).await;
                recording.finish(signals).await?;
            }
        };
    }
    measure_row!([1, 2], rows::gateway_vs_direct_grpc);
    measure_row!([3], rows::authentication_cost);
    measure_row!([4], rows::idle_websockets);
    measure_row!([5], rows::time_to_first_token);
    measure_row!([6], rows::rpc_vs_own_sql_get_report);
    measure_row!([7], rows::rpc_vs_own_sql_get_me);
    measure_row!([8], rows::startup_and_idle_memory);
    measure_row!([9], rows::mesh_rpc_vs_health);
    measure_row!([10], rows::binary_size);

    let run = RunInfo {
        profile: paths::profile_dir(),
        rounds: inputs.rounds,
        seconds: args.seconds,
    };
    report(&rows, &run, bench_dir, tools)?;
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("rows not measured: {}", failures.join("; "))
    }
}

fn bearer_and_context(bearer: &str, context: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TREVEN_LOAD_BEARER", bearer.to_owned()),
        ("TREVEN_LOAD_CONTEXT", context.to_owned()),
    ]
}

/// The number of the latest version of `report_id` (row 6's script reads
/// it, as GetReport of version 0 does).
fn latest_version(report_id: &str) -> Result<i64> {
    // psql does not interpolate variables into `-c`: the id goes into the
    // text, so it must be a UUID's characters only.
    if report_id.is_empty() || !report_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("report id {report_id:?} is not a UUID");
    }
    let out = cmd::output(std::process::Command::new("psql").args([
        "-Atq",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        DATABASE,
        "-c",
        &format!("SELECT latest_version FROM reports.reports WHERE id = '{report_id}'"),
    ]))?;
    out.trim()
        .parse()
        .with_context(|| format!("report {report_id}: latest version {out:?}"))
}

/// A mesh context of `user` for `audience`, minted by the operator key of
/// the dev stack (`treven admin mint-context`, audited in tenants).
fn mint_context(state: &DevState, user: &token::SignedInUser, audience: &str) -> Result<String> {
    let out = cmd::output(
        treven::command(state)?
            .env("TREVEN_TENANTS_URL", format!("http://{}", SERVICES[0].1))
            .args([
                "admin",
                "mint-context",
                "--org-id",
                &user.org_id,
                "--user-id",
                &user.sub,
                "--role",
                "analyst",
                "--ttl-secs",
                "3600",
                "--audience",
                audience,
                "--reason",
                "cargo xtask bench",
            ]),
    )?;
    Ok(out.trim().to_owned())
}

/// Spawns a child that prints one JSON line when ready and keeps running.
async fn spawn_printing(command: &mut Command, name: &str) -> Result<(GroupChild, Value)> {
    let mut child = GroupChild::spawn(name, command)?;
    let line = child.read_stdout_line(Duration::from_secs(10)).await?;
    let value = serde_json::from_str(&line).with_context(|| format!("{name} printed {line:?}"))?;
    Ok((child, value))
}
