//! What documents records in the organisation's audit log (kept by the
//! tenants service; the client and its delivery are
//! [`treven_mesh::audit`]'s), with tokens minted by the documents key.
//!
//! What is recorded, and when:
//! - `document.download` (who got a URL for which document and version):
//!   *before* the URL is handed out; no entry, no URL (fail closed).
//! - `document.delete`: before the delete, with an event id derived from
//!   the document, so a retried delete records one entry.
//! - `document.view` (GetDocument): after the read, best-effort beyond the
//!   retries (a lost entry is logged at error level): a view shows
//!   metadata only, never the bytes.
//! - `document.erase` (the retention job): before the bytes are erased,
//!   with an event id derived from the document, so a re-run after a crash
//!   records nothing twice.

pub use treven_mesh::audit::{AuditEntry, AuditLog, RECORD_ATTEMPTS, derived_event_id};

/// The audit action of a document's metadata read.
pub const VIEW_ACTION: &str = "document.view";
/// The audit action of a presigned download handed out.
pub const DOWNLOAD_ACTION: &str = "document.download";
/// The audit action of a delete.
pub const DELETE_ACTION: &str = "document.delete";
/// The audit action of an upload erased under the retention setting.
pub const ERASE_ACTION: &str = "document.erase";
/// The audit resource type of documents.
pub const DOCUMENT_RESOURCE: &str = "document";
