//! The organisation's audit log, kept by the tenants service: entries are
//! appended with `RecordAuditEvent`, called by the agents service acting for
//! the user (so the entry names them as the actor), with tokens minted by
//! the agents key. Used for admins' oversight reads, PII decisions on chat
//! messages and the redactions of model output.

use serde_json::Value;
use tonic::transport::Channel;
use treven_mesh::wire::json_to_struct;
use treven_mesh::{MeshContext, Principal, ServiceError, Signer};
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

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
    pub async fn record(
        &self,
        context: &MeshContext,
        entry: AuditEntry,
    ) -> Result<(), ServiceError> {
        let mut request = tonic::Request::new(tenants::RecordAuditEventRequest {
            action: entry.action.to_owned(),
            resource_type: entry.resource_type.to_owned(),
            resource_id: entry.resource_id,
            details: Some(json_to_struct(&entry.details)),
        });
        self.signer
            .attach(&mut request, context, Principal::Tenants)?;
        self.client
            .clone()
            .record_audit_event(request)
            .await
            .map_err(|status| ServiceError::from_remote("tenants", &status))?;
        Ok(())
    }
}
