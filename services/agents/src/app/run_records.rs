//! Run records: a run stored as running when it starts and with its result,
//! tools, tokens, cost and duration when it ends, each announced on
//! `run:<id>`. Shared by agent runs and report generation. Each start and
//! end is audited ([`RUN_START_ACTION`], [`RUN_COMPLETE_ACTION`],
//! [`RUN_FAIL_ACTION`] on `agent_run/<id>`: kind, model, tokens, cost,
//! duration, tools), in the background, by the user the run is for.

/// The audit action of an agent run (or a report generation) started.
pub const RUN_START_ACTION: &str = "agent_run.start";
/// The audit action of a run that completed.
pub const RUN_COMPLETE_ACTION: &str = "agent_run.complete";
/// The audit action of a run that failed.
pub const RUN_FAIL_ACTION: &str = "agent_run.fail";

use std::time::Instant;

use chrono::Utc;
use serde_json::{Value, json};
use treven_mesh::events::{EventChannel, EventKind};
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use tracing::Instrument as _;

use super::Agents;
use super::audit::{AuditEntry, BACKGROUND_ATTEMPTS, derived_event_id};
use super::runs::RUN_RESOURCE;
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
        self.audit_run(
            ctx,
            RUN_START_ACTION,
            &run,
            json!({ "kind": kind, "model_id": run.model_id }),
        );
        Ok(run)
    }

    /// Records `action` on `run` in the audit log in the background (a run
    /// is never held up by it), with an event id derived from the run and
    /// the action, retried for [`BACKGROUND_ATTEMPTS`]; an entry still not
    /// recorded is logged at error level.
    fn audit_run(&self, ctx: &MeshContext, action: &'static str, run: &Run, details: Value) {
        let Some(audit) = self.audit.clone() else {
            tracing::warn!(org = %run.org_id, run = %run.id, action, "no audit log is wired: run not audited");
            return;
        };
        let event_id = derived_event_id(&[action, &run.org_id.to_string(), &run.id.to_string()]);
        let entry = AuditEntry {
            action,
            resource_type: RUN_RESOURCE,
            resource_id: run.id.to_string(),
            details,
        };
        let ctx = ctx.clone();
        let run_id = run.id;
        tokio::spawn(
            async move {
                if let Err(error) = audit
                    .record_with(&ctx, entry, event_id, BACKGROUND_ATTEMPTS)
                    .await
                {
                    tracing::error!(org = %ctx.org_id(), run = %run_id, action, %event_id, %error, "agent run audit entry lost");
                }
            }
            .in_current_span(),
        );
    }

    /// Records the run's result, tools, tokens, cost and duration, and
    /// announces its end (a storage failure is logged).
    pub(super) async fn finish_run(
        &self,
        ctx: &MeshContext,
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
        let (action, error) = if run.status == RunStatus::Completed {
            (RUN_COMPLETE_ACTION, None)
        } else {
            (
                RUN_FAIL_ACTION,
                Some(run.error.chars().take(200).collect::<String>()),
            )
        };
        self.audit_run(
            ctx,
            action,
            &run,
            json!({
                "kind": run.kind,
                "model_id": run.model_id,
                "input_tokens": run.usage.input_tokens,
                "output_tokens": run.usage.output_tokens,
                "cost_nanos": run.cost_nanos,
                "duration_ms": run.duration_ms,
                "tools_used": run.tools_used,
                "error": error,
            }),
        );
    }
}
