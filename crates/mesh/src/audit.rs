//! The organisation's audit log, kept by the tenants service: a service
//! that keeps no Postgres of its own (documents, agents) appends entries
//! with `RecordAuditEvent`, acting for the user who called (so the entry
//! names them as the actor), with tokens minted by its own key.
//!
//! Delivery: each entry has one event id and the time of the call, and a
//! transient failure (UNAVAILABLE, a deadline) is retried with that same
//! id, so tenants stores it once even when an earlier attempt was written
//! but its answer lost. These services have no outbox: their callers
//! record *before* they act where the entry guards something (fail
//! closed), and log an entry written after a change when it is lost. What
//! each service records, and when, is in its own `app::audit` module.

use serde_json::Value;
use sha2::Digest as _;
use tonic::transport::Channel;
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use uuid::Uuid;

use crate::wire::json_to_struct;
use crate::{ErrorCode, MeshContext, Principal, ServiceError, Signer};

/// Attempts of one [`AuditLog::record`] when tenants is unavailable.
pub const RECORD_ATTEMPTS: u32 = 3;
/// The wait before the second attempt (the third waits twice as long).
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// One audit entry: what was done to which resource. Details never quote
/// personal data, prompts or file contents (ids, kinds, sizes and counts).
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
}

/// The audit log of the tenants service.
#[derive(Debug, Clone)]
pub struct AuditLog {
    client: TenantsServiceClient<Channel>,
    signer: Signer,
}

impl AuditLog {
    /// Records through the tenants service on `channel`, with tokens
    /// minted by `signer` (the service's key, or the operator's for a
    /// retention job).
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self {
            client: TenantsServiceClient::new(channel),
            signer,
        }
    }

    /// Appends `entry` to the audit log of the organisation of the user
    /// `context` acts for, with them as the actor, under a new event id (a
    /// UUID v7), trying [`RECORD_ATTEMPTS`] times while tenants is
    /// unavailable. Any other failure, or the last one, is returned
    /// (UNAVAILABLE to the caller when tenants stays down).
    pub async fn record(
        &self,
        context: &MeshContext,
        entry: AuditEntry,
    ) -> Result<(), ServiceError> {
        self.record_with(context, entry, Uuid::now_v7(), RECORD_ATTEMPTS)
            .await
    }

    /// [`AuditLog::record`] with a given event id (one derived from what
    /// the entry is about, [`derived_event_id`], makes a re-run of the
    /// same work record it once) and number of attempts (background
    /// entries, which delay nobody, may retry for longer: the waits grow
    /// 200 ms, 400 ms, 600 ms…).
    pub async fn record_with(
        &self,
        context: &MeshContext,
        entry: AuditEntry,
        event_id: Uuid,
        attempts: u32,
    ) -> Result<(), ServiceError> {
        let message = tenants::RecordAuditEventRequest {
            action: entry.action.to_owned(),
            resource_type: entry.resource_type.to_owned(),
            resource_id: entry.resource_id,
            details: Some(json_to_struct(&entry.details)),
            event_id: event_id.to_string(),
            occurred_at: Some(crate::wire::timestamp(chrono::Utc::now())),
        };
        let attempts = attempts.max(1);
        let mut attempt = 1;
        loop {
            let mut request = tonic::Request::new(message.clone());
            self.signer
                .attach(&mut request, context, Principal::Tenants)?;
            match self.client.clone().record_audit_event(request).await {
                Ok(_) => return Ok(()),
                Err(status) => {
                    let error = ServiceError::from_remote("tenants", &status);
                    if error.code() != ErrorCode::Unavailable || attempt >= attempts {
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

/// A stable event id for `parts` (a UUID v8 of their SHA-256): the same
/// parts give the same id, so work that records the same fact again (a
/// re-run of a retention job, a retried delete) is stored once by tenants.
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
