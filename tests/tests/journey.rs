//! The analyst journey, end to end, through the gateway only — as the
//! frontend drives it — for two organisations at the same time:
//!
//! sign in → upload a source document with the presigned URL → add a source
//! → chat with streaming over WebSocket → create a report and watch its
//! generation over WebSocket → edit a section (PII blocked, then redacted) →
//! submit (every blocking quality check passes) → self-approval refused →
//! a second analyst approves → export PDF → download it → share with a partner →
//! read the audit trail. Neither organisation ever sees the other's data.
//! The steps are in `support/journey.rs`; `prodlike.rs` runs them against
//! the production shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::journey::{CHAT_REPLY, journey, never_see_each_other};
use support::mesh::Mesh;
use treven_testkit::bedrock::{Script, Usage};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_organisations_run_the_whole_journey_and_never_see_each_other() {
    let mesh = Mesh::start("journey").await;
    for _ in 0..4 {
        mesh.bedrock
            .push(Script::text(CHAT_REPLY).usage(Usage::new(40, 9)));
    }

    let (a, b) = tokio::join!(journey(&mesh, "alpha"), journey(&mesh, "bravo"));
    never_see_each_other(&mesh, &a, &b).await;
    mesh.stop().await;
}
