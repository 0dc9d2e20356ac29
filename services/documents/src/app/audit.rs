//! The organisation's audit log, kept by the tenants service: documents
//! appends entries with `RecordAuditEvent`, acting for the user who called
//! (so the entry names them as the actor), with tokens minted by the
//! documents key. Documents keeps its data in DynamoDB and S3 and has no
//! outbox, so each entry has one event id and a transient failure is
//! retried with that id: tenants stores it once even when an earlier
//! attempt was written but its answer lost.
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

use serde_json::Value;
use sha2::Digest as _;
use tonic::transport::Channel;
use treven_mesh::wire::json_to_struct;
use treven_mesh::{ErrorCode, MeshContext, Principal, ServiceError, Signer};
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use uuid::Uuid;

/// Attempts of one [`AuditLog::record`] when tenants is unavailable.
pub const RECORD_ATTEMPTS: u32 = 3;
/// The wait before the second attempt (the third waits twice as long).
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

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

/// One audit entry: what was done to which resource. Details never quote
/// personal data or file contents (ids, versions, sizes and counts).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Dotted lowercase words, e.g. `document.download`.
    pub action: &'static str,
    /// A lowercase word, e.g. `document`.
    pub resource_type: &'static str,
    /// The resource's id.
    pub resource_id: String,
    /// A JSON object.
    pub details: Value,
    /// The event id: derived from what the entry is about when a retry of
    /// the whole operation must not record it twice
    /// ([`derived_event_id`]); a new UUID v7 otherwise.
    pub event_id: Uuid,
}

/// A stable event id for `parts` (a UUID v8 of their SHA-256): the same
/// parts give the same id, so a re-run that records the same fact again is
/// stored once by tenants.
pub fn derived_event_id(parts: &[&str]) -> Uuid {
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The audit log of the tenants service.
#[derive(Debug, Clone)]
pub struct AuditLog {
    client: TenantsServiceClient<Channel>,
    signer: Signer,
}

impl AuditLog {
    /// Records through the tenants service on `channel`, with tokens
    /// minted by `signer` (the documents key, or the operator's for the
    /// retention job).
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self {
            client: TenantsServiceClient::new(channel),
            signer,
        }
    }

    /// Appends `entry` to the audit log of the organisation of the user
    /// `context` acts for, with them as the actor. A transient failure
    /// (UNAVAILABLE, a deadline) is retried [`RECORD_ATTEMPTS`] times with
    /// the entry's event id; any other failure, or the last one, is
    /// returned (UNAVAILABLE to the caller when tenants stays down).
    pub async fn record(
        &self,
        context: &MeshContext,
        entry: AuditEntry,
    ) -> Result<(), ServiceError> {
        let message = tenants::RecordAuditEventRequest {
            action: entry.action.to_owned(),
            resource_type: entry.resource_type.to_owned(),
            resource_id: entry.resource_id,
            details: Some(json_to_struct(&entry.details)),
            event_id: entry.event_id.to_string(),
            occurred_at: Some(treven_mesh::wire::timestamp(chrono::Utc::now())),
        };
        let mut attempt = 1;
        loop {
            let mut request = tonic::Request::new(message.clone());
            self.signer
                .attach(&mut request, context, Principal::Tenants)?;
            match self.client.clone().record_audit_event(request).await {
                Ok(_) => return Ok(()),
                Err(status) => {
                    let error = ServiceError::from_remote("tenants", &status);
                    if error.code() != ErrorCode::Unavailable || attempt >= RECORD_ATTEMPTS {
                        return Err(error);
                    }
                    tracing::warn!(event_id = %message.event_id, action = %message.action, attempt, %error, "audit entry not recorded yet; retrying with the same event id");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_event_ids_are_stable_and_distinct() {
        let a = derived_event_id(&["document.erase", "org", "doc-1"]);
        assert_eq!(a, derived_event_id(&["document.erase", "org", "doc-1"]));
        assert_ne!(a, derived_event_id(&["document.erase", "org", "doc-2"]));
        assert_ne!(a, derived_event_id(&["document.erase", "orgdoc-1", ""]));
        assert_eq!(a.get_version_num(), 8);
    }
}
