//! The production shape runs here: every task of the synthesized prod
//! template (`deploy/cdk.out/Treven-prod.template.json`; `bash
//! deploy/ci.sh` writes it) boots as its own `treven` process with its own
//! command, environment and secrets — secrets read from moto's Secrets
//! Manager as ECS reads them — against TLS-only stand-ins (Postgres with
//! only `hostssl`, Redis with only a TLS port and an AUTH token, a throwaway
//! CA), Cloud Map names resolved to loopback; every task reaches SERVING
//! (gRPC health over TLS, `/healthz` and `/readyz`, `/ping`), then the
//! analyst journey runs through that stack's gateways.
//! `support/prodlike.rs` lists the local deviations.
//!
//! `cargo xtask prodlike` runs this test; `cargo xtask prodlike --hold`
//! keeps the stack up after the journey until Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::journey::{journey, never_see_each_other};
use support::prodlike::ProdStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_prod_task_boots_on_tls_only_stand_ins_and_serves_the_journey() {
    let stack = ProdStack::start().await;
    let names: Vec<&str> = stack.tasks.iter().map(|t| t.name.as_str()).collect();
    for needed in [
        "agents",
        "documents",
        "gateway-api",
        "gateway-ws",
        "reports",
        "tenants",
    ] {
        assert!(names.contains(&needed), "no task {needed} in {names:?}");
    }
    eprintln!(
        "prod-like stack SERVING: {names:?}; REST {}, WebSocket {}; logs in {}",
        stack.gateway,
        stack.ws,
        stack.logs.display()
    );

    // One organisation after the other: the one agents task answers chat and
    // generation from the scripted Bedrock fake, in order.
    let a = journey(&stack, "alpha").await;
    let b = journey(&stack, "bravo").await;
    never_see_each_other(&stack, &a, &b).await;

    if std::env::var_os("TREVEN_PRODLIKE_HOLD").is_some() {
        eprintln!(
            "holding the stack (TREVEN_PRODLIKE_HOLD): REST {}, WebSocket {}, logs in {}; \
             each task's environment is in its log directory; Ctrl-C stops everything",
            stack.gateway,
            stack.ws,
            stack.logs.display()
        );
        for task in &stack.tasks {
            let env: Vec<String> = task.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            std::fs::write(
                stack.logs.join(format!("{}.env", task.name)),
                env.join("\n"),
            )
            .ok();
        }
        let _ = tokio::signal::ctrl_c().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
