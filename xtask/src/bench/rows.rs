//! The rows of the bench table, one function per row (rows 1 and 2 are
//! measured together). Each runs its A/B pairs through [`super::load`],
//! appends its [`Row`]s, and on a failure records it and returns, so the
//! other rows are still measured. Which rows run is decided by the caller.

use std::fs;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::load::{Script, argv, field, load, load_binary, pairs, pgbench, pgbench_script, repeat};
use super::report::{Row, row};
use super::sql;
use crate::state::DevState;
use crate::{cmd, paths, treven};

/// Where row 8 starts `treven serve` and the bare health server.
const STARTUP_ADDR: &str = "127.0.0.1:50191";

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

/// What the rows need from the stack the bench brought up.
pub(super) struct RowInputs<'a> {
    /// Rounds of each A/B pair.
    pub rounds: usize,
    /// Measured seconds of each load run.
    pub seconds: f64,
    /// The same, as the load generator's argument.
    pub secs: String,
    /// Seconds of calls before each load run measures, as an argument.
    pub warmup: String,
    /// Idle WebSocket connections of row 4.
    pub connections: usize,
    /// Seconds row 4 holds them idle before reading the RSS, as an argument.
    pub ws_hold: String,
    /// Seconds row 8 waits after SERVING before reading the RSS, as an
    /// argument.
    pub settle: String,
    /// `LD_PRELOAD` of the `treven` processes (`--preload`), if any.
    pub preload: Option<String>,
    /// The gateway's HTTP base URL.
    pub gw: String,
    /// The gateway's WebSocket URL.
    pub ws_url: String,
    /// The gateway's process id (row 4 reads its RSS).
    pub gateway_pid: i32,
    /// The tenants service's gRPC address.
    pub tenants_addr: &'static str,
    /// The reports service's gRPC address.
    pub reports_addr: &'static str,
    /// The agents service's gRPC address (the services process; row 9).
    pub agents_addr: &'static str,
    /// The reports service's database URL (row 6's pgbench connects as it).
    pub reports_database_url: String,
    /// The tenants service's database URL (row 7's pgbench).
    pub tenants_database_url: String,
    /// The report every GetReport row reads.
    pub report_id: String,
    /// Its latest version's number (row 6's script reads that version).
    pub report_version: i64,
    /// The user's organisation and Cognito subject (rows 6 and 7's
    /// scripts).
    pub org_id: String,
    /// The user's Cognito subject.
    pub sub: String,
    /// Its REST URL on the gateway.
    pub report_url: String,
    /// The conversation row 5 chats in.
    pub conversation_id: String,
    /// The Bedrock fake's endpoint.
    pub bedrock: String,
    /// The user's bearer token, as the load generator's environment.
    pub bearer: Vec<(&'static str, String)>,
    /// A mesh context of the user for the reports service, as the load
    /// generator's environment.
    pub ctx: Vec<(&'static str, String)>,
    /// The same for the tenants service (contexts are per audience).
    pub tenants_ctx: Vec<(&'static str, String)>,
    /// The same for the agents service, plus the mesh keys, so the load
    /// generator can also mint a fresh token per call (row 9).
    pub agents_ctx: Vec<(&'static str, String)>,
    /// Row 3's environment: the gateway's, plus the token and a context.
    pub auth_env: Vec<(&'static str, String)>,
    /// The environment that keeps processes' logs quiet.
    pub quiet: Vec<(&'static str, String)>,
    /// The bench stack's state (row 8 starts `treven` against it).
    pub state: &'a DevState,
    /// `target/bench`.
    pub bench_dir: &'a Path,
}

impl RowInputs<'_> {
    /// `call` on the gRPC server at `addr` with `clients` workers, `env`
    /// for the load generator, and `extra` arguments.
    async fn grpc(
        &self,
        addr: &str,
        call: &str,
        clients: &str,
        env: &[(&'static str, String)],
        extra: &[&str],
    ) -> Result<Value> {
        let mut args = argv(&[
            "grpc",
            "--addr",
            addr,
            "--call",
            call,
            "--seconds",
            &self.secs,
            "--warmup",
            &self.warmup,
            "--concurrency",
            clients,
        ]);
        args.extend(argv(extra));
        load(args, env.to_vec()).await
    }

    /// GetReport through the gateway (REST, as the browser calls it).
    async fn rest_get_report(&self, clients: &str) -> Result<Value> {
        load(
            argv(&[
                "rest",
                "--url",
                &self.report_url,
                "--seconds",
                &self.secs,
                "--warmup",
                &self.warmup,
                "--concurrency",
                clients,
            ]),
            self.bearer.clone(),
        )
        .await
    }

    /// GetReport straight to the reports service (gRPC, as services call it).
    async fn grpc_get_report(&self, clients: &str) -> Result<Value> {
        load(
            argv(&[
                "grpc",
                "--addr",
                self.reports_addr,
                "--call",
                "get-report",
                "--id",
                &self.report_id,
                "--seconds",
                &self.secs,
                "--warmup",
                &self.warmup,
                "--concurrency",
                clients,
            ]),
            self.ctx.clone(),
        )
        .await
    }
}

/// Rows 1 and 2: the same GetReport through the gateway (REST) and straight
/// to the reports service (gRPC), at one client and at 32.
pub(super) async fn gateway_vs_direct_grpc(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    'rows_1_2: {
        say!("==> 1, 2: gateway REST vs direct gRPC GetReport");
        let (rest1, grpc1) = or_skip!(pairs(r, || inputs.rest_get_report("1"), || inputs.grpc_get_report("1")).await, failures, "rows 1-2", 'rows_1_2);
        rows.push(row(
            1,
            "gateway REST p50 / direct gRPC p50, GetReport, c=1",
            field(&rest1, "p50_us"),
            field(&grpc1, "p50_us"),
            "µs",
            "≤ 1.15",
            |x| x <= 1.15,
        ));
        let (rest32, grpc32) = or_skip!(pairs(r, || inputs.rest_get_report("32"), || inputs.grpc_get_report("32")).await, failures, "rows 1-2", 'rows_1_2);
        rows.push(row(
            2,
            "gateway REST req/s / direct gRPC req/s, GetReport, c=32",
            field(&rest32, "rps"),
            field(&grpc32, "rps"),
            "req/s",
            "≥ 0.75",
            |x| x >= 0.75,
        ));
    }
}

/// Row 3: an authenticated REST call against an unauthenticated one.
pub(super) async fn authentication_cost(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    let secs = &inputs.secs;
    let report_id = &inputs.report_id;
    let auth_env = &inputs.auth_env;
    'row_3: {
        say!("==> 3: authenticated vs unauthenticated REST");
        let auth = or_skip!(repeat(r, || {
            load(
                argv(&[
                    "rest-auth-cost",
                    "--report-id",
                    report_id,
                    "--seconds",
                    secs,
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
            "≤ 1.05",
            |x| x <= 1.05,
        ));
    }
}

/// Row 4: how many idle WebSocket connections a GiB of gateway RSS holds.
pub(super) async fn idle_websockets(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let gateway_pid = inputs.gateway_pid;
    let bearer = &inputs.bearer;
    'row_4: {
        say!("==> 4: idle WebSocket connections");
        let connections = inputs.connections.to_string();
        let ws = or_skip!(load(
            argv(&[
                "ws-idle",
                "--url",
                &inputs.ws_url,
                "--connections",
                &connections,
                "--pid",
                &gateway_pid.to_string(),
                "--hold",
                &inputs.ws_hold,
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
            context: false,
            samples_a: vec![],
            samples_b: vec![],
        });
        // What one more connection costs, without the process's own idle
        // base (which the row above spreads over its connections). The
        // base is measured after rows 1–3, so memory those freed and the
        // connections reuse makes this an upper bound.
        let before = ws["rss_before_bytes"].as_f64().unwrap_or(0.0);
        let after = ws["rss_after_bytes"].as_f64().unwrap_or(0.0);
        rows.push(Row {
            number: 4,
            what: "(context) idle WebSocket connections per GiB of RSS they add",
            a: ws["open_after_hold"].as_f64().unwrap_or(0.0),
            b: (after - before).max(0.0) / f64::from(1u32 << 20),
            unit: "conns / MiB",
            ratio: ws["connections_per_gib_added"].as_f64().unwrap_or(0.0),
            goal: "—",
            met: true,
            context: true,
            samples_a: vec![],
            samples_b: vec![],
        });
    }
}

/// Row 5: the time to first token that agents and the gateway add to the
/// Bedrock fake's.
pub(super) async fn time_to_first_token(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    let bearer = &inputs.bearer;
    let gw = &inputs.gw;
    let conversation_id = &inputs.conversation_id;
    let bedrock = &inputs.bedrock;
    'row_5: {
        say!("==> 5: time to first token");
        let ttft = or_skip!(load(
            argv(&[
                "ttft",
                "--url",
                &format!("{gw}/api/conversations/{conversation_id}/messages"),
                "--bedrock",
                bedrock,
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
            context: false,
            samples_a: vec![],
            samples_b: vec![],
        });
    }
}

/// Row 6: GetReport over gRPC against exactly its SQL in pgbench, at 8
/// clients; `pgbench -S` as a line of context.
pub(super) async fn rpc_vs_own_sql_get_report(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    'row_6: {
        say!("==> 6: GetReport RPC vs its own SQL in pgbench");
        let script = Script {
            text: sql::get_report(),
            path: inputs.bench_dir.join("get_report.pgbench.sql"),
            database_url: &inputs.reports_database_url,
            pgoptions: Some("-c search_path=reports"),
            variables: vec![
                ("org", inputs.org_id.clone()),
                ("report", inputs.report_id.clone()),
                ("number", inputs.report_version.to_string()),
            ],
        };
        let (rpc8, sql8) = or_skip!(pairs(
            r,
            || inputs.grpc_get_report("8"),
            || pgbench_script(&script, 8, inputs.seconds),
        )
        .await, failures, "row 6", 'row_6);
        rows.push(row(
            6,
            "GetReport RPC req/s / its own SQL in pgbench TPS, c=8",
            field(&rpc8, "rps"),
            field(&sql8, "tps"),
            "per s",
            "≥ 0.6",
            |x| x >= 0.6,
        ));
        let select_only =
            or_skip!(repeat(r, || pgbench(8, inputs.seconds)).await, failures, "row 6", 'row_6);
        rows.push(
            row(
                6,
                "(context) GetReport RPC req/s / pgbench -S TPS, c=8",
                field(&rpc8, "rps"),
                field(&select_only, "tps"),
                "per s",
                "—",
                |_| true,
            )
            .context(),
        );
    }
}

/// Row 7: GetMe over gRPC against exactly its SQL in pgbench, at 16
/// clients.
pub(super) async fn rpc_vs_own_sql_get_me(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    'row_7: {
        say!("==> 7: GetMe RPC vs its own SQL in pgbench");
        let script = Script {
            text: sql::get_me(),
            path: inputs.bench_dir.join("get_me.pgbench.sql"),
            database_url: &inputs.tenants_database_url,
            pgoptions: None,
            variables: vec![("org", inputs.org_id.clone()), ("sub", inputs.sub.clone())],
        };
        let (me, sql16) = or_skip!(pairs(
            r,
            || inputs.grpc(inputs.tenants_addr, "get-me", "16", &inputs.tenants_ctx, &[]),
            || pgbench_script(&script, 16, inputs.seconds),
        )
        .await, failures, "row 7", 'row_7);
        rows.push(row(
            7,
            "GetMe RPC req/s / its own SQL in pgbench TPS, c=16",
            field(&me, "rps"),
            field(&sql16, "tps"),
            "per s",
            "≥ 0.6",
            |x| x >= 0.6,
        ));
    }
}

/// Row 9: what the mesh runtime costs per call: an authenticated, traced
/// RPC that touches no store (DetectPii of an empty text) against a bare
/// health RPC on the same server, 16 clients. The load generator presents
/// one token on every call; a line of context mints a fresh one per call,
/// as the gateway and the services do for real calls.
pub(super) async fn mesh_rpc_vs_health(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    let addr = inputs.agents_addr;
    let ctx = &inputs.agents_ctx;
    'row_9: {
        say!("==> 9: authenticated no-store RPC vs bare health RPC");
        let (pii, health) = or_skip!(pairs(
            r,
            || inputs.grpc(addr, "detect-pii", "16", ctx, &[]),
            || inputs.grpc(addr, "health", "16", &[], &[]),
        )
        .await, failures, "row 9", 'row_9);
        rows.push(row(
            9,
            "DetectPii (context, policy, tracing; no store) / health req/s, c=16",
            field(&pii, "rps"),
            field(&health, "rps"),
            "req/s",
            "≥ 0.85",
            |x| x >= 0.85,
        ));
        let fresh = or_skip!(repeat(r, || inputs.grpc(addr, "detect-pii", "16", ctx, &["--fresh-context-as", "reports"])).await, failures, "row 9", 'row_9);
        rows.push(
            row(
                9,
                "(context) the same with a fresh token per call / health req/s",
                field(&fresh, "rps"),
                field(&health, "rps"),
                "req/s",
                "—",
                |_| true,
            )
            .context(),
        );
    }
}

/// Row 8: `treven serve` start-up time and idle memory against a bare tonic
/// health server.
pub(super) async fn startup_and_idle_memory(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let r = inputs.rounds;
    let state = inputs.state;
    let quiet = &inputs.quiet;
    'row_8: {
        say!("==> 8: start-up time and idle memory");
        let treven_env: Vec<(&'static str, String)> = treven::env(state)
            .into_iter()
            .chain(quiet.clone())
            .chain([("TREVEN_TENANTS_ADDR", STARTUP_ADDR.to_owned())])
            .chain(
                inputs
                    .preload
                    .clone()
                    .map(|library| ("LD_PRELOAD", library)),
            )
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
                        "--settle",
                        &inputs.settle,
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
                        "--settle",
                        &inputs.settle,
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
            "≤ 3",
            |x| x <= 3.0,
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
            "≤ 1.5",
            |x| x <= 1.5,
        ));
    }
}

/// Row 10: the stripped release binary's size, plain and gzipped, against
/// what deploy/README.md assumes.
pub(super) async fn binary_size(
    inputs: &RowInputs<'_>,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let bench_dir = &inputs.bench_dir;
    'row_10: {
        say!("==> row 10: the release binary's size (the image cannot be built here)");
        // The perf profile is release code with line tables; stripped,
        // it is the binary the Dockerfile's release build ships (the smoke
        // run strips the debug binary: the size then means nothing).
        let binary = paths::treven_binary();
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
            "stripped release treven / the 45 MB deploy/README.md budgets",
            vec![mb(bytes)],
            vec![45.0],
            "MB",
            "≤ 1",
            |x| x <= 1.0,
        ));
        rows.push(row(
            10,
            "gzip -9 of it / the 18 MB deploy/README.md budgets",
            vec![mb(gzipped)],
            vec![18.0],
            "MB",
            "≤ 1",
            |x| x <= 1.0,
        ));
    }
}
