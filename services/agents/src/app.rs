//! The agents service's use cases, one file each: [`conversations`],
//! [`chat`] (the streamed reply), [`generation`] (KJ sections for the
//! reports service), [`runs`] (agent runs), [`usage`] (token metering),
//! [`pii`] (the gate on chat messages), [`oversight`] (admins' audited
//! reads of others' conversations), [`retention`] (erasing expired message
//! bodies) and [`audit`] (the audit log). [`prompt`] holds the bounds of every user-controlled
//! text that reaches a model. `run_records` stores runs as they start and end;
//! `events` publishes to WebSocket clients. Nothing here sees
//! protobuf: the `api` adapter converts; storage is [`crate::store`] and
//! outbound calls are [`crate::clients`].

pub mod audit;
pub mod chat;
pub mod conversations;
mod events;
pub mod generation;
pub mod oversight;
pub mod pii;
pub mod prompt;
pub mod retention;
mod run_records;
pub mod runs;
pub mod usage;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use treven_mesh::events::EventPublisher;
use treven_mesh::pagination::CursorCodec;
use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

pub use audit::{AuditEntry, AuditLog};
pub use chat::{ChatEvent, HISTORY_MESSAGES, SendError};
pub use conversations::MAX_TITLE_CHARS;
pub use generation::{GENERATION_SOURCES, GenerateInput, GenerationEvent, MAX_INSTRUCTIONS_CHARS};
pub use oversight::OVERSIGHT_READ_ACTION;
pub use retention::{MessageErasure, MessageRetention};
pub use run_records::{RUN_COMPLETE_ACTION, RUN_FAIL_ACTION, RUN_START_ACTION};
pub use runs::LOCAL_PII_MODEL;
pub use usage::MonthUsage;

use crate::clients::{Documents, ReportsLookup};
use crate::config::Limits;
use crate::provider::router::Router;
use crate::provider::{Usage, cost_nanos};
use crate::store::Store;
use crate::tools::ToolBox;

/// The agents service.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
    /// The audit log (oversight reads, PII decisions, redactions); none
    /// means no oversight reads and no PII decisions.
    audit: Option<AuditLog>,
}

struct Inner {
    store: Store,
    router: Router,
    tools: ToolBox,
    documents: Documents,
    reports: Box<dyn ReportsLookup>,
    events: Option<mpsc::Sender<events::Publication>>,
    guardrail: Option<crate::guardrail::Guardrail>,
    cursors: CursorCodec,
    limits: Limits,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("router", &self.inner.router)
            .finish_non_exhaustive()
    }
}

/// `YYYY-MM` of `time`.
fn month_of(time: DateTime<Utc>) -> String {
    time.format("%Y-%m").to_string()
}

/// The UUID in `raw`; INVALID_ARGUMENT naming `field` otherwise.
fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid_field(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| ServiceError::invalid_field(field, "must be a UUID"))
}

impl Agents {
    /// The service over its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        router: Router,
        documents: Documents,
        reports: Box<dyn ReportsLookup>,
        events: Option<EventPublisher>,
        guardrail: Option<crate::guardrail::Guardrail>,
        cursors: CursorCodec,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                router,
                tools: ToolBox::new(documents.clone()).with_guardrail(guardrail.clone()),
                documents,
                reports,
                events: events.and_then(events::publisher),
                guardrail,
                cursors,
                limits,
            }),
            audit: None,
        }
    }

    /// The model router (for health and tests).
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }
    /// Adds one model call's tokens and cost to `org`'s month (a failure is
    /// logged: metering never fails a reply); returns the cost.
    async fn record_usage(&self, org: OrgId, model_id: &str, usage: Usage) -> i64 {
        let cost = cost_nanos(model_id, usage);
        if let Err(error) = self
            .inner
            .store
            .add_usage(org, &month_of(Utc::now()), model_id, usage, cost)
            .await
        {
            tracing::error!(%org, model_id, error = %error, "usage not recorded");
        }
        cost
    }
}
