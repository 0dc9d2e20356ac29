//! Property-based testing of the whole REST surface with schemathesis (from
//! PyPI, in the tools venv): every operation of `/openapi.json`, called with
//! a valid analyst token and generated inputs (valid and invalid), passes
//! every check (`--checks all`: no 5xx, answers and their headers match the
//! documented schemas and statuses, invalid inputs are refused and valid
//! ones accepted, auth is enforced, deleted resources are gone, a method a
//! path does not list is 405 with `Allow`), through the examples, coverage,
//! fuzzing and stateful phases (the stateful phase follows the document's
//! `links` from creates to the operations on the created id). The gateway
//! keeps its default rate limit and schemathesis stays under it. Bounded in
//! time for CI.
//!
//! "Valid inputs are accepted" (`positive_data_acceptance`) holds because
//! every rule a service enforces on its own inputs is declared in the protos
//! (field rules, and message-level CEL for the cross-field ones such as
//! "what an agent run needs in `input`, by kind"), so the document states it.
//! What only the store knows (a missing report, a workflow state, a model
//! this deployment does not route to) answers 404 or 409, never 400.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::mesh::{Mesh, MeshOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_passes_the_schemathesis_checks_including_the_stateful_phase() {
    // The default limits: 600 calls per user per minute, refilled evenly.
    let mesh = Mesh::start_with("schemathesis", MeshOptions::default()).await;
    let analyst = mesh.sign_in("fuzzed", "ngo", "analyst@fuzzed.test", "analyst");
    let report_dir =
        std::env::temp_dir().join(format!("treven-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&report_dir).unwrap();
    // A page cursor is an opaque, signed token: a generated one is refused
    // (unit-tested in `treven_mesh::pagination`), so lists are called from
    // their first page. A deleted document's versions stay listable by
    // design (its history: `delete_hides_the_document_and_versions_keep_its_history`
    // in the documents tests), so "deleted resource still available" does
    // not apply to that list.
    std::fs::write(
        report_dir.join("schemathesis.toml"),
        "[parameters]\n\"query.cursor\" = \"\"\n\"body.cursor\" = \"\"\n\n\
         [[operations]]\ninclude-path = \"/api/documents/{id}/versions\"\n\
         checks.use_after_free.enabled = false\n",
    )
    .unwrap();
    let output = Command::new(support::tool("schemathesis"))
        // Its caches and reports go to a scratch directory, not the clone.
        .current_dir(&report_dir)
        .arg("run")
        .arg(format!("{}/openapi.json", mesh.gateway))
        .args(["--url", &mesh.gateway])
        .args(["--checks", "all"])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", analyst.token),
        ])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // Under the gateway's 10 calls a second per user.
        .args(["--rate-limit", "9/s"])
        .args([
            "--max-examples",
            "25",
            "--max-time",
            "240",
            "--workers",
            "1",
        ])
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
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "nothing was tested:\n{stdout}");
    mesh.stop().await;
}
