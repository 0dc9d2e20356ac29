//! What the documents service does: role checks, validation that needs
//! configuration, the upload → verify → available flow, sources, evidence
//! packs and artifacts. Wire types stay in `api`; AWS calls in
//! `store::meta` and `store::blobs`.
//!
//! [`Documents`] is defined here with what every use case shares (limits,
//! role sets, validation, the document lookup); its methods live one file per
//! use case group: `uploads`, `library` (reading, listing, deleting,
//! downloading), `sources`, `evidence`, `artifacts` and [`retention`] (the
//! erasure of expired uploads); [`audit`] is the audit log of views,
//! downloads, deletes and erasures.

mod artifacts;
pub mod audit;
mod evidence;
mod library;
pub mod retention;
mod sources;
mod uploads;

use treven_mesh::pagination::CursorCodec;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use self::artifacts::UploadSlots;
pub use self::audit::{AuditEntry, AuditLog};
use crate::config::DocumentsConfig;
use crate::model::Document;
use crate::store::blobs::{BlobStore, Presigned};
use crate::store::meta::{DocumentRecord, MetaStore};

/// Default page size.
pub const DEFAULT_PAGE: u32 = 20;
/// Largest page size.
pub const MAX_PAGE: u32 = 100;
/// Most sources behind one report version.
pub const MAX_EVIDENCE_SOURCES: usize = 500;
/// Largest evidence JSON read back into a pack.
const MAX_EVIDENCE_BYTES: usize = 1024 * 1024;

type Result<T> = std::result::Result<T, ServiceError>;

/// A new upload: its document and where to PUT the bytes.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The pending document.
    pub document: Document,
    /// The presigned PUT.
    pub presigned: Presigned,
}

/// An evidence pack ready to download.
#[derive(Debug, Clone)]
pub struct EvidencePack {
    /// The export id.
    pub export_id: Uuid,
    /// The report version it covers.
    pub version: u32,
    /// How many sources it holds.
    pub source_count: usize,
    /// The presigned GET.
    pub presigned: Presigned,
}

/// The documents service.
#[derive(Debug, Clone)]
pub struct Documents {
    config: DocumentsConfig,
    meta: MetaStore,
    blobs: BlobStore,
    cursors: CursorCodec,
    uploads: UploadSlots,
    /// The audit log of views, downloads, deletes and erasures; `serve`
    /// always wires one. Without one (a library build, e.g. in tests that
    /// run no tenants service) nothing is audited and that is logged.
    audit: Option<AuditLog>,
}

impl Documents {
    /// The service over its stores.
    pub fn new(
        config: DocumentsConfig,
        meta: MetaStore,
        blobs: BlobStore,
        cursors: CursorCodec,
    ) -> Self {
        let uploads = UploadSlots::new(config.max_concurrent_uploads);
        Self {
            config,
            meta,
            blobs,
            cursors,
            uploads,
            audit: None,
        }
    }

    /// The service recording views, downloads, deletes and erasures in
    /// `audit`.
    pub fn with_audit_log(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The audit log, if wired.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &DocumentsConfig {
        &self.config
    }

    async fn record(&self, context: &MeshContext, id: Uuid) -> Result<DocumentRecord> {
        self.meta
            .document(context.org_id(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found("document"))
    }
}
