//! Run records: a run stored as running when it starts and with its result,
//! tools, tokens, cost and duration when it ends, each announced on
//! `run:<id>`. Shared by agent runs and report generation.

use std::time::Instant;

use chrono::Utc;
use serde_json::{Value, json};
use treven_mesh::events::{EventChannel, EventKind};
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::Agents;
use crate::agent::Outcome;
use crate::model::{AgentKind, Run, RunStatus};
use crate::provider::Usage;

impl Agents {
    /// Records a run of `kind` as running and announces it.
    pub(super) async fn start_run(
        &self,
        ctx: &MeshContext,
        kind: AgentKind,
        input: Value,
        model_id: &str,
    ) -> Result<Run, ServiceError> {
        let run = Run {
            id: Uuid::now_v7(),
            org_id: ctx.org_id(),
            kind,
            model_id: model_id.to_owned(),
            status: RunStatus::Running,
            input,
            output: None,
            error: String::new(),
            tools_used: Vec::new(),
            usage: Usage::default(),
            cost_nanos: 0,
            requested_by: ctx.user_id().to_owned(),
            started_at: Utc::now(),
            duration_ms: None,
        };
        self.inner.store.put_run(&run).await?;
        self.publish(
            run.org_id,
            EventChannel::Run(run.id),
            EventKind::AgentStatus,
            json!({ "id": run.id, "status": "running" }),
        )
        .await;
        tracing::info!(org = %run.org_id, run = %run.id, kind = ?kind, "agent run started");
        Ok(run)
    }

    /// Records the run's result, tools, tokens, cost and duration, and
    /// announces its end (a storage failure is logged).
    pub(super) async fn finish_run(
        &self,
        mut run: Run,
        result: Result<Value, String>,
        outcome: &Outcome,
        cost: i64,
        started: Instant,
    ) {
        if !outcome.model_id.is_empty() {
            run.model_id = outcome.model_id.clone();
        }
        run.tools_used = outcome.tools_used.clone();
        run.usage = outcome.usage;
        run.cost_nanos = cost;
        run.duration_ms = Some(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX));
        match result {
            Ok(output) => {
                run.status = RunStatus::Completed;
                run.output = Some(output);
            }
            Err(error) => {
                run.status = RunStatus::Failed;
                run.error = error;
            }
        }
        if let Err(error) = self.inner.store.put_run(&run).await {
            tracing::error!(run = %run.id, error = %error, "run result not stored");
        }
        let status = if run.status == RunStatus::Completed {
            "completed"
        } else {
            "failed"
        };
        self.publish(
            run.org_id,
            EventChannel::Run(run.id),
            EventKind::AgentStatus,
            json!({ "id": run.id, "status": status, "error": run.error }),
        )
        .await;
        tracing::info!(org = %run.org_id, run = %run.id, status, "agent run finished");
    }
}
