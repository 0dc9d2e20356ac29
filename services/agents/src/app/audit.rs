//! The organisation's audit log, kept by the tenants service: entries are
//! appended with `RecordAuditEvent`, called by the agents service acting for
//! the user (so the entry names them as the actor), with tokens minted by
//! the agents key. Used for admins' oversight reads, PII decisions on chat
//! messages and the redactions of model output.

use serde_json::Value;
use tonic::transport::Channel;
use treven_mesh::wire::json_to_struct;
use treven_mesh::{ErrorCode, MeshContext, Principal, ServiceError, Signer};
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use uuid::Uuid;

/// Attempts of one [`AuditLog::record`] when tenants is unavailable.
pub const RECORD_ATTEMPTS: u32 = 3;
/// Attempts of an entry recorded in the background (a run's start and
/// end): about 9 s of retries before it is logged as lost.
pub const BACKGROUND_ATTEMPTS: u32 = 9;
/// The wait before the second attempt (the third waits twice as long).
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// One audit entry: what was done to which resource. Details never quote
/// personal data (ids, kinds and counts only).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Dotted lowercase words, e.g. `conversation.pii_decision`.
    pub action: &'static str,
    /// A lowercase word, e.g. `conversation`.
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
    /// minted by `signer` (the agents key).
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self {
            client: TenantsServiceClient::new(channel),
            signer,
        }
    }

    /// Appends `entry` to the audit log of the organisation of the user
    /// `context` acts for, with them as the actor.
    ///
    /// Delivery: the entry gets one event id (a UUID v7) and the time of
    /// the call, and a transient failure (UNAVAILABLE, a deadline) is
    /// retried [`RECORD_ATTEMPTS`] times with that same id, so tenants
    /// stores it once even when an earlier attempt was written but its
    /// answer lost. Agents keeps its data in DynamoDB and has no outbox:
    /// callers record *before* they act where the entry guards something
    /// (an oversight read is recorded before anything is shown, PII
    /// decisions before the message is stored — fail closed), and the few
    /// entries written after a change (redactions of model output) are
    /// best-effort beyond these retries, logged when lost.
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
    /// entries, which delay nobody, retry for longer: the waits grow 200
    /// ms, 400 ms, 600 ms…).
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
            occurred_at: Some(treven_mesh::wire::timestamp(chrono::Utc::now())),
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
/// re-run of the retention job) is stored once by tenants.
pub fn derived_event_id(parts: &[&str]) -> Uuid {
    use sha2::Digest as _;
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
