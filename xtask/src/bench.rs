//! `cargo xtask bench`: the platform measured against its own baselines,
//! side by side in one run on this machine.
//!
//! Builds `treven` and the `treven-load` generator with the `perf` profile
//! (release code, line tables for `perf`), brings up a stack of separate
//! processes (services, a Bedrock-backed agents service, the gateway, moto,
//! a Bedrock fake) in `target/bench/stack`, then measures each row as an
//! A/B pair, alternating A and B for `--repetitions` rounds and taking the
//! median of each. Prints one table, writes `target/bench/bench.json` and,
//! when matplotlib can be installed into the tools venv, `bench.png`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;

use crate::dev::{self, ServeProcess, Stack, StackPlan};
use crate::process::{GroupChild, StopSignals};
use crate::state::DevState;
use crate::tools::Tools;
use crate::{cmd, paths, services, token, treven};

/// The profile of the measured binaries (see the workspace Cargo.toml).
const PROFILE: &str = "perf";
/// The bench stack's database (dropped and created fresh each run).
const DATABASE: &str = "treven_bench";
/// pgbench's own database.
const PGBENCH_DATABASE: &str = "treven_pgbench";
const SERVICES: [(&str, &str); 4] = [
    ("TREVEN_TENANTS_ADDR", "127.0.0.1:50151"),
    ("TREVEN_DOCUMENTS_ADDR", "127.0.0.1:50152"),
    ("TREVEN_REPORTS_ADDR", "127.0.0.1:50153"),
    ("TREVEN_AGENTS_ADDR", "127.0.0.1:50154"),
];
const BEDROCK_AGENTS_ADDR: &str = "127.0.0.1:50164";
const GATEWAY_ADDR: &str = "127.0.0.1:8180";
const GATEWAY_WS_ADDR: &str = "127.0.0.1:8181";
const STARTUP_ADDR: &str = "127.0.0.1:50191";

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
}

impl BenchArgs {
    /// Whether any of `rows` is to be measured.
    fn wants(&self, rows: &[u8]) -> bool {
        self.only.is_empty() || rows.iter().any(|row| self.only.contains(row))
    }
}

/// The value of a measurement; on an error, records it in `failures` and
/// leaves the row's labelled block, so the other rows are still measured.
macro_rules! or_skip {
    ($result:expr, $failures:ident, $name:literal, $label:lifetime) => {
        match $result {
            Ok(measured) => measured,
            Err(err) => {
                say!("    {} failed: {err:#}", $name);
                $failures.push(format!("{}: {err:#}", $name));
                break $label;
            }
        }
    };
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    number: u8,
    what: &'static str,
    a: f64,
    b: f64,
    unit: &'static str,
    ratio: f64,
    goal: &'static str,
    met: bool,
    samples_a: Vec<f64>,
    samples_b: Vec<f64>,
}

/// Runs the bench (see the module docs).
pub fn run(args: &BenchArgs) -> Result<()> {
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
            "10",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            PGBENCH_DATABASE,
        ]))
    });
    result?;

    let bench_dir = paths::target_dir().join("bench");
    paths::use_stack_layout(bench_dir.join("stack"), PROFILE);
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

fn load_binary() -> PathBuf {
    paths::target_dir().join(PROFILE).join("treven-load")
}

async fn measure(
    args: &BenchArgs,
    tools: &Tools,
    stack: &mut Stack,
    signals: &mut StopSignals,
    bench_dir: &std::path::Path,
) -> Result<()> {
    if !args.no_build {
        dev::timed("cargo build --profile perf (treven, treven-load)", async {
            let mut cargo = Command::new("cargo");
            cargo
                .args([
                    "build",
                    "--profile",
                    PROFILE,
                    "-p",
                    "treven",
                    "-p",
                    "treven-e2e",
                ])
                .args(["--bin", "treven", "--bin", "treven-load"])
                .current_dir(paths::workspace_root())
                .stdin(std::process::Stdio::null());
            crate::process::run_to_end("cargo build", &mut cargo, signals).await
        })
        .await?;
    }

    // The Bedrock fake first: the Bedrock-backed agents service needs its address.
    let mut fake = Command::new(load_binary());
    fake.args(["bedrock-fake", "--first-token-ms", "1000"])
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
    let context = mint_context(&state, &user)?;
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
    let mut rows = Vec::new();
    // A row that cannot be measured is reported and the others still run.
    let mut failures: Vec<String> = Vec::new();
    let r = args.repetitions.max(1);

    // The same GetReport through the gateway (REST, as the browser calls it)
    // and straight to the reports service (gRPC, as services call it).
    let rest_get_report = |clients: &str| {
        load(
            argv(&[
                "rest",
                "--url",
                &report_url,
                "--seconds",
                &secs,
                "--concurrency",
                clients,
            ]),
            bearer.to_vec(),
        )
    };
    let grpc_get_report = |clients: &str| {
        load(
            argv(&[
                "grpc",
                "--addr",
                reports_addr,
                "--call",
                "get-report",
                "--id",
                &report_id,
                "--seconds",
                &secs,
                "--concurrency",
                clients,
            ]),
            ctx.to_vec(),
        )
    };

    'rows_1_2: {
        if !args.wants(&[1, 2]) {
            break 'rows_1_2;
        }
        say!("==> 1, 2: gateway REST vs direct gRPC GetReport");
        let (rest1, grpc1) = or_skip!(pairs(r, || rest_get_report("1"), || grpc_get_report("1")).await, failures, "rows 1-2", 'rows_1_2);
        rows.push(row(
            1,
            "gateway REST p50 / direct gRPC p50, GetReport, c=1",
            field(&rest1, "p50_us"),
            field(&grpc1, "p50_us"),
            "µs",
            "≤ 1.2",
            |x| x <= 1.2,
        ));
        let (rest32, grpc32) = or_skip!(pairs(r, || rest_get_report("32"), || grpc_get_report("32")).await, failures, "rows 1-2", 'rows_1_2);
        rows.push(row(
            2,
            "gateway REST req/s / direct gRPC req/s, GetReport, c=32",
            field(&rest32, "rps"),
            field(&grpc32, "rps"),
            "req/s",
            "≥ 0.6",
            |x| x >= 0.6,
        ));
    }

    'row_3: {
        if !args.wants(&[3]) {
            break 'row_3;
        }
        say!("==> 3: authenticated vs unauthenticated REST");
        let auth = or_skip!(repeat(r, || {
            load(
                argv(&[
                    "rest-auth-cost",
                    "--report-id",
                    &report_id,
                    "--seconds",
                    &secs,
                ]),
                auth_env.clone(),
            )
        })
        .await, failures, "row 3", 'row_3);
        rows.push(row(
            3,
            "authenticated / unauthenticated REST p50, GetReport, c=1",
            field(&auth, "authenticated_p50_us"),
            field(&auth, "unauthenticated_p50_us"),
            "µs",
            "≤ 1.1",
            |x| x <= 1.1,
        ));
    }

    'row_4: {
        if !args.wants(&[4]) {
            break 'row_4;
        }
        say!("==> 4: idle WebSocket connections");
        let connections = args.connections.to_string();
        let ws = or_skip!(load(
            argv(&[
                "ws-idle",
                "--url",
                &format!("ws://{GATEWAY_WS_ADDR}/ws"),
                "--connections",
                &connections,
                "--pid",
                &gateway_pid.to_string(),
            ]),
            bearer.to_vec(),
        )
        .await, failures, "row 4", 'row_4);
        let per_gib = ws["connections_per_gib_rss"].as_f64().unwrap_or(0.0);
        rows.push(Row {
            number: 4,
            what: "idle WebSocket connections per GiB of gateway RSS",
            a: ws["open_after_hold"].as_f64().unwrap_or(0.0),
            b: ws["rss_after_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 20),
            unit: "conns / MiB",
            ratio: per_gib,
            goal: "≥ 100,000",
            met: per_gib >= 100_000.0,
            samples_a: vec![],
            samples_b: vec![],
        });
    }

    'row_5: {
        if !args.wants(&[5]) {
            break 'row_5;
        }
        say!("==> 5: time to first token");
        let ttft = or_skip!(load(
            argv(&[
                "ttft",
                "--url",
                &format!("{gw}/api/conversations/{conversation_id}/messages"),
                "--bedrock",
                &bedrock,
                "--repetitions",
                &(2 * r + 1).to_string(),
            ]),
            bearer.to_vec(),
        )
        .await, failures, "row 5", 'row_5);
        let added = ttft["added_ratio"].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            number: 5,
            what: "TTFT added by agents + gateway / Bedrock fake's TTFT",
            a: ttft["gateway_p50_ms"].as_f64().unwrap_or(0.0),
            b: ttft["bedrock_p50_ms"].as_f64().unwrap_or(0.0),
            unit: "ms",
            ratio: added,
            goal: "≤ 0.01",
            met: added <= 0.01,
            samples_a: vec![],
            samples_b: vec![],
        });
    }

    'row_6: {
        if !args.wants(&[6]) {
            break 'row_6;
        }
        say!("==> 6: GetReport RPC vs pgbench -S");
        let (rpc8, pg8) = or_skip!(pairs(
            r,
            || grpc_get_report("8"),
            || pgbench(8, args.seconds),
        )
        .await, failures, "row 6", 'row_6);
        rows.push(row(
            6,
            "GetReport RPC req/s / pgbench -S TPS, c=8",
            field(&rpc8, "rps"),
            field(&pg8, "tps"),
            "per s",
            "≥ 0.4",
            |x| x >= 0.4,
        ));
    }

    'row_7: {
        if !args.wants(&[7]) {
            break 'row_7;
        }
        say!("==> 7: real RPC vs bare health RPC");
        let (me, health) = or_skip!(pairs(
            r,
            || {
                load(
                    argv(&[
                        "grpc",
                        "--addr",
                        tenants_addr,
                        "--call",
                        "get-me",
                        "--seconds",
                        &secs,
                        "--concurrency",
                        "16",
                    ]),
                    ctx.to_vec(),
                )
            },
            || {
                load(
                    argv(&[
                        "grpc",
                        "--addr",
                        tenants_addr,
                        "--call",
                        "health",
                        "--seconds",
                        &secs,
                        "--concurrency",
                        "16",
                    ]),
                    Vec::new(),
                )
            },
        )
        .await, failures, "row 7", 'row_7);
        rows.push(row(
            7,
            "GetMe (auth, tracing, Postgres) req/s / health req/s, c=16",
            field(&me, "rps"),
            field(&health, "rps"),
            "req/s",
            "≥ 0.8",
            |x| x >= 0.8,
        ));
    }

    'row_8: {
        if !args.wants(&[8]) {
            break 'row_8;
        }
        say!("==> 8: start-up time and idle memory");
        let treven_env: Vec<(&'static str, String)> = treven::env(&state)
            .into_iter()
            .chain(quiet.clone())
            .chain([("TREVEN_TENANTS_ADDR", STARTUP_ADDR.to_owned())])
            .collect();
        let treven_bin = paths::treven_binary().display().to_string();
        let load_bin = load_binary().display().to_string();
        let (treven_start, bare_start) = or_skip!(pairs(
            r,
            || {
                load(
                    argv(&[
                        "startup",
                        "--addr",
                        STARTUP_ADDR,
                        "--",
                        &treven_bin,
                        "serve",
                        "--target",
                        "tenants",
                    ]),
                    treven_env.clone(),
                )
            },
            || {
                load(
                    argv(&[
                        "startup",
                        "--addr",
                        STARTUP_ADDR,
                        "--",
                        &load_bin,
                        "bare-health",
                        "--addr",
                        STARTUP_ADDR,
                    ]),
                    Vec::new(),
                )
            },
        )
        .await, failures, "row 8", 'row_8);
        rows.push(row(
            8,
            "treven serve time to SERVING / bare tonic health server",
            field(&treven_start, "to_serving_ms"),
            field(&bare_start, "to_serving_ms"),
            "ms",
            "≤ 10",
            |x| x <= 10.0,
        ));
        let mib = |v: Vec<f64>| {
            v.into_iter()
                .map(|b| b / f64::from(1u32 << 20))
                .collect::<Vec<_>>()
        };
        rows.push(row(
            8,
            "treven serve idle RSS / bare tonic health server",
            mib(field(&treven_start, "idle_rss_bytes")),
            mib(field(&bare_start, "idle_rss_bytes")),
            "MiB",
            "≤ 4",
            |x| x <= 4.0,
        ));
    }

    if args.wants(&[10]) {
        'row_10: {
            say!("==> row 10: the release binary's size (the image cannot be built here)");
            // The perf profile is release code with line tables; stripped,
            // it is the binary the Dockerfile's release build ships.
            let binary = paths::target_dir().join(PROFILE).join("treven");
            let stripped = bench_dir.join("treven.stripped");
            or_skip!(
                cmd::run(
                    std::process::Command::new("objcopy")
                        .arg("--strip-all")
                        .arg(&binary)
                        .arg(&stripped)
                ),
                failures,
                "row 10",
                'row_10
            );
            let bytes = or_skip!(
                fs::metadata(&stripped).map(|m| m.len() as f64),
                failures,
                "row 10",
                'row_10
            );
            let gzipped = or_skip!(
                cmd::output(std::process::Command::new("sh").arg("-c").arg(format!(
                    "gzip -9 -c '{}' | wc -c",
                    stripped.display()
                )))
                .and_then(|out| Ok(out.trim().parse::<f64>()?)),
                failures,
                "row 10",
                'row_10
            );
            let mb = |b: f64| b / 1e6;
            // B is what deploy/README.md's image size reasoning assumes.
            rows.push(row(
                10,
                "stripped release treven / the 40 MB deploy/README.md assumes",
                vec![mb(bytes)],
                vec![40.0],
                "MB",
                "≤ 1",
                |x| x <= 1.0,
            ));
            rows.push(row(
                10,
                "gzip -9 of it / the 14 MB deploy/README.md assumes",
                vec![mb(gzipped)],
                vec![14.0],
                "MB",
                "≤ 1",
                |x| x <= 1.0,
            ));
        }
    }

    report(&rows, bench_dir, tools)?;
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("rows not measured: {}", failures.join("; "))
    }
}

/// Runs `a` and `b` alternately `rounds` times.
async fn pairs<FA, FB, A, B>(rounds: usize, a: FA, b: FB) -> Result<(Vec<Value>, Vec<Value>)>
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

async fn repeat<F, A>(rounds: usize, a: F) -> Result<Vec<Value>>
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

fn bearer_and_context(bearer: &str, context: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TREVEN_LOAD_BEARER", bearer.to_owned()),
        ("TREVEN_LOAD_CONTEXT", context.to_owned()),
    ]
}

/// Runs `treven-load <args>` and parses the JSON line it prints; a run with
/// errors fails the bench (a broken setup must not pass for a slow one).
async fn load(args: Vec<String>, env: Vec<(&'static str, String)>) -> Result<Value> {
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

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// `pgbench -S` (select-only) at `clients`, as `{"tps": …}`.
async fn pgbench(clients: u32, seconds: f64) -> Result<Value> {
    let out = Command::new("pgbench")
        .args(["-S", "-n", "-h", "127.0.0.1", "-U", "postgres", "-j", "2"])
        .args([
            "-c",
            &clients.to_string(),
            "-T",
            &(seconds.ceil() as u64).to_string(),
        ])
        .arg(PGBENCH_DATABASE)
        .output()
        .await
        .context("cannot run pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
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

fn field(values: &[Value], name: &str) -> Vec<f64> {
    values.iter().filter_map(|v| v[name].as_f64()).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn row(
    number: u8,
    what: &'static str,
    samples_a: Vec<f64>,
    samples_b: Vec<f64>,
    unit: &'static str,
    goal: &'static str,
    met: impl Fn(f64) -> bool,
) -> Row {
    let (a, b) = (median(&samples_a), median(&samples_b));
    let ratio = a / b;
    Row {
        number,
        what,
        a,
        b,
        unit,
        ratio,
        goal,
        met: met(ratio),
        samples_a,
        samples_b,
    }
}

fn mint_context(state: &DevState, user: &token::SignedInUser) -> Result<String> {
    let out = cmd::output(treven::command(state)?.args([
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
    ]))?;
    Ok(out.trim().to_owned())
}

/// Spawns a child that prints one JSON line when ready and keeps running.
async fn spawn_printing(command: &mut Command, name: &str) -> Result<(GroupChild, Value)> {
    let mut child = GroupChild::spawn(name, command)?;
    let line = child.read_stdout_line(Duration::from_secs(10)).await?;
    let value = serde_json::from_str(&line).with_context(|| format!("{name} printed {line:?}"))?;
    Ok((child, value))
}

fn report(rows: &[Row], bench_dir: &std::path::Path, tools: &Tools) -> Result<()> {
    let mut text = format!(
        "\n{:<3} {:<62} {:>12} {:>12} {:>10} {:>10}  {}\n",
        "#", "measurement (A / B)", "A", "B", "ratio", "goal", "met"
    );
    for row in rows {
        text.push_str(&format!(
            "{:<3} {:<62} {:>12.1} {:>12.1} {:>10.3} {:>10}  {}   ({})\n",
            row.number,
            row.what,
            row.a,
            row.b,
            row.ratio,
            row.goal,
            if row.met { "yes" } else { "NO" },
            row.unit
        ));
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
    let machine = BTreeMap::from([
        (
            "cpus",
            std::thread::available_parallelism()
                .map_or(0, usize::from)
                .to_string(),
        ),
        ("cpu", cpu_model()),
        (
            "kernel",
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
    ]);
    let json = bench_dir.join("bench.json");
    fs::write(
        &json,
        serde_json::to_vec_pretty(&serde_json::json!({ "machine": machine, "rows": rows }))?,
    )?;
    say!("    wrote {}", json.display());
    let png = bench_dir.join("bench.png");
    match chart(tools, &json, &png) {
        Ok(()) => say!("    wrote {}", png.display()),
        Err(err) => say!("    no chart: {err:#}"),
    }
    Ok(())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default()
}

/// Draws the ratios against their goals with matplotlib (installed into the
/// tools venv on first use; the bench is not part of CI).
fn chart(tools: &Tools, json: &std::path::Path, png: &std::path::Path) -> Result<()> {
    let python = tools.python();
    if !cmd::succeeds(std::process::Command::new(&python).args(["-c", "import matplotlib"])) {
        cmd::run_to_stderr(std::process::Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "matplotlib==3.10.7",
        ]))?;
    }
    cmd::run_to_stderr(
        std::process::Command::new(&python)
            .arg(paths::workspace_root().join("xtask").join("bench_chart.py"))
            .arg(json)
            .arg(png),
    )
}
