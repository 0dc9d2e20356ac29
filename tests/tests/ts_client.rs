//! The generated TypeScript client (`clients/ts`: protoc-gen-es and
//! connect-es, generated from the protos at build time) against the whole
//! mesh, over the Connect protocol (JSON and binary) and gRPC-web: a unary
//! call, a server stream, an invalid argument with its field violation, an
//! unauthenticated call on a kept-alive connection, an internal RPC. The
//! Node test (`clients/ts/test/client.test.ts`) does the calls; this test
//! starts the mesh, signs an analyst in and runs `npm test` (generate,
//! compile, `node --test`) with the gateway URL and the token.
//!
//! `clients/ts/node_modules` comes from `npm ci` in the tools step of
//! `cargo xtask test` (`cargo xtask tools` does it too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::mesh::{Mesh, MeshOptions};
use treven_testkit::bedrock::{Script, Usage};

/// Server streams in the Node test: one chat reply is queued for each.
const STREAMS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_works_over_connect_and_grpc_web() {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/ts");
    assert!(
        package.join("node_modules/.bin/protoc-gen-es").exists(),
        "{} has no node_modules: run `cargo xtask tools` (it runs npm ci there)",
        package.display()
    );
    let mesh = Mesh::start_with(
        "tsclient",
        MeshOptions {
            env: vec![
                ("TREVEN_RATE_LIMIT_PER_MINUTE", "10000".to_owned()),
                ("TREVEN_ORG_RATE_LIMIT_PER_MINUTE", "10000".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;
    for _ in 0..STREAMS {
        mesh.bedrock.push(
            Script::text(["Recruitment ", "moved to closed ", "messaging groups."])
                .usage(Usage::new(40, 9)),
        );
    }
    let analyst = mesh.sign_in("typed", "ngo", "analyst@typed.test", "analyst");
    let output = tokio::task::spawn_blocking({
        let gateway = mesh.gateway.clone();
        move || {
            Command::new("npm")
                .args(["test", "--silent"])
                .current_dir(&package)
                .env("TREVEN_GATEWAY_URL", gateway)
                .env("TREVEN_TOKEN", analyst.token)
                .output()
                .expect("npm runs (Node.js 20+)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Node test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("pass 15") && stdout.contains("fail 0"),
        "not every case ran:\n{stdout}"
    );
    mesh.stop().await;
}
