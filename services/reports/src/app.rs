//! What the reports service does, independent of the wire: role checks,
//! the workflow, versions, the PII gate, exports, sharing and trends. One
//! file per use case; this module holds the service, its error and the
//! helpers they share.

mod comments;
mod create;
mod edit_section;
mod export;
mod get;
mod lifecycle;
mod notifications;
mod partner_links;
mod pii_decisions;
mod regenerate_section;
mod request_changes;
mod review;
mod reviewer;
mod share;
mod trends;
mod versions;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;
use treven_mesh::pagination::CursorCodec;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::{AuditEntry, Clients};
use crate::config::Limits;
use crate::model::{Content, ExportFormat, PiiFinding, QualityCheck, Report, Section};
use crate::store::{OrgTx, PgStore};

pub use comments::{CommentDraft, parse_comment_text};
pub use partner_links::{LinkAccess, Opened, PartnerLink, SharedFile};
pub use request_changes::OWN_SUBMISSION_REFUSED;
pub use trends::derive_trends;

/// Default page size.
pub const DEFAULT_PAGE: u32 = 50;
/// Largest page size.
pub const MAX_PAGE: u32 = 100;
/// Default and largest page of trends.
pub const TREND_PAGE: (u32, u32) = (200, 500);

/// An error of the reports service: a plain service error, or personal data
/// that blocks a write.
#[derive(Debug)]
pub enum ReportsError {
    /// Any other error.
    Service(ServiceError),
    /// PII_DETECTED with the undecided findings.
    Pii(Vec<PiiFinding>),
    /// FAILED_PRECONDITION: the version fails these blocking quality checks.
    QualityFailed(Vec<QualityCheck>),
}

impl From<ServiceError> for ReportsError {
    fn from(error: ServiceError) -> Self {
        ReportsError::Service(error)
    }
}

impl From<crate::store::StoreError> for ReportsError {
    fn from(error: crate::store::StoreError) -> Self {
        ReportsError::Service(error.into())
    }
}

type Result<T> = std::result::Result<T, ReportsError>;

/// A new section's content from a request (only `section` is read).
#[derive(Debug, Clone)]
pub struct SectionEdit {
    /// The section.
    pub section: Section,
    /// Content holding the section's field, citations and flags.
    pub content: Content,
}

/// A finished export.
#[derive(Debug, Clone)]
pub struct Export {
    /// The version exported.
    pub version: i32,
    /// Its format.
    pub format: ExportFormat,
    /// The presigned URL.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// The reports service.
#[derive(Debug, Clone)]
pub struct Reports {
    store: PgStore,
    cursors: CursorCodec,
    clients: Clients,
    limits: Limits,
    wake: Arc<Notify>,
    relay: Arc<Notify>,
    link_key: crate::links::LinkKey,
}

fn failed_precondition(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::FailedPrecondition, message)
}

fn stale(field: &str, latest: i32) -> ServiceError {
    ServiceError::conflict_on(
        field,
        format!("is not the latest version ({latest}); reload and retry"),
    )
}

fn not_found() -> ServiceError {
    ServiceError::not_found("report")
}

impl Reports {
    /// The service over `store`; `wake` wakes the generation workers,
    /// `relay` the outbox relay.
    pub fn new(
        store: PgStore,
        cursors: CursorCodec,
        clients: Clients,
        limits: Limits,
        wake: Arc<Notify>,
        relay: Arc<Notify>,
    ) -> Self {
        // Partner links are signed with a key derived from the reports
        // signing key unless one is configured (`with_link_key`).
        let link_key = crate::links::LinkKey::from_bytes(clients.derive_key("partner-links"));
        Self {
            store,
            cursors,
            clients,
            limits,
            wake,
            relay,
            link_key,
        }
    }

    /// The service signing partner links with `key`
    /// (`TREVEN_REPORTS_LINK_KEY`).
    pub fn with_link_key(mut self, key: crate::links::LinkKey) -> Self {
        self.link_key = key;
        self
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The clients.
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    async fn begin(&self, context: &MeshContext) -> Result<OrgTx> {
        Ok(self
            .store
            .begin(context.org_id(), context.user_id())
            .await?)
    }

    /// Stores `entry` in the outbox of `tx`, the transaction of the change
    /// it records: tenants gets it after, and only if, that commits.
    async fn audit(&self, tx: &mut OrgTx, context: &MeshContext, entry: AuditEntry) -> Result<()> {
        crate::outbox::enqueue_audit(tx, context, &entry).await?;
        Ok(())
    }

    /// Commits `tx` and wakes the outbox relay to deliver what it stored.
    async fn commit(&self, tx: OrgTx) -> Result<()> {
        tx.commit().await?;
        self.relay.notify_one();
        Ok(())
    }

    /// Records entries about an attempt that changed nothing (a write the
    /// PII gate blocked): through the outbox as well, in a transaction of
    /// their own, so no call waits on tenants.
    async fn audit_alone(&self, context: &MeshContext, entries: Vec<AuditEntry>) -> Result<()> {
        let mut tx = self.begin(context).await?;
        for entry in entries {
            self.audit(&mut tx, context, entry).await?;
        }
        self.commit(tx).await
    }

    async fn existing(&self, tx: &mut OrgTx, id: Uuid) -> Result<Report> {
        Ok(tx.report(id, false).await?.ok_or_else(not_found)?)
    }

    async fn publish_status(&self, report: &Report) {
        self.clients
            .publish(
                report.org_id,
                report.id,
                json!({"report_id": report.id, "status": report.status.as_str(), "version": report.latest_version}),
            )
            .await;
    }
}
