//! Property-based testing of the whole REST surface with schemathesis (from
//! PyPI, in the tools venv): every operation of `/openapi.json`, called with
//! a valid analyst token and generated inputs (valid and invalid), must never
//! answer with a 5xx. Bounded in time for CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::mesh::{Mesh, MeshOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_operation_answers_a_server_error_to_generated_requests() {
    let mesh = Mesh::start_with(
        "schemathesis",
        MeshOptions {
            env: vec![
                // The run sends hundreds of requests a minute on purpose.
                ("TREVEN_RATE_LIMIT_PER_MINUTE", "100000".to_owned()),
                ("TREVEN_ORG_RATE_LIMIT_PER_MINUTE", "100000".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;
    let analyst = mesh.sign_in("fuzzed", "ngo", "analyst@fuzzed.test", "analyst");
    let report_dir =
        std::env::temp_dir().join(format!("treven-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&report_dir).unwrap();
    let output = Command::new(support::tool("schemathesis"))
        // Its caches and reports go to a scratch directory, not the clone.
        .current_dir(&report_dir)
        .arg("run")
        .arg(format!("{}/openapi.json", mesh.gateway))
        .args(["--url", &mesh.gateway])
        .args(["--checks", "not_a_server_error"])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", analyst.token),
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--max-time", "90", "--workers", "1"])
        .args(["--request-timeout", "20", "--seed", "20261125"])
        .args([
            "--suppress-health-check",
            "all",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .arg("--report-dir")
        .arg(&report_dir)
        .output()
        .expect("schemathesis runs (installed by cargo xtask test)");
    let _ = std::fs::remove_dir_all(&report_dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found server errors:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "nothing was tested:\n{stdout}");
    mesh.stop().await;
}
