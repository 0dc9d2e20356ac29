//! Oversight: an admin reading a conversation they did not start. Every
//! such read is first recorded in the organisation's audit log (tenants'
//! `RecordAuditEvent`, called by the agents service acting for the admin,
//! so the entry names the admin as the actor) as
//! [`OVERSIGHT_READ_ACTION`] on `conversation/<id>` with the owner in its
//! details. Nothing is shown unless the entry is written: with no audit
//! log wired the read answers NOT_FOUND, and a failed write UNAVAILABLE.

use serde_json::json;
use tonic::transport::Channel;
use treven_mesh::context::attach_context;
use treven_mesh::wire::json_to_struct;
use treven_mesh::{ErrorCode, MeshContext, Principal, ServiceError, Signer};
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

use super::Agents;
use crate::model::Conversation;

/// The audit action of an admin's read of another user's conversation.
pub const OVERSIGHT_READ_ACTION: &str = "conversation.read_for_oversight";
/// The audit resource type of conversations.
pub const CONVERSATION_RESOURCE: &str = "conversation";

/// The audit log of the tenants service, as oversight reads use it.
#[derive(Debug, Clone)]
pub struct OversightAudit {
    client: TenantsServiceClient<Channel>,
    signer: Signer,
}

impl OversightAudit {
    /// Records through the tenants service on `channel`, with tokens
    /// minted by `signer` (the agents key).
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self {
            client: TenantsServiceClient::new(channel),
            signer,
        }
    }

    /// Appends the oversight read of `conversation` by the user `context`
    /// acts for (through `rpc`) to their organisation's audit log.
    async fn record(
        &self,
        context: &MeshContext,
        conversation: &Conversation,
        rpc: &str,
    ) -> Result<(), ServiceError> {
        let mut request = tonic::Request::new(tenants::RecordAuditEventRequest {
            action: OVERSIGHT_READ_ACTION.to_owned(),
            resource_type: CONVERSATION_RESOURCE.to_owned(),
            resource_id: conversation.id.to_string(),
            details: Some(json_to_struct(&json!({
                "owner": conversation.created_by,
                "rpc": rpc,
            }))),
        });
        attach_context(
            &mut request,
            &self.signer.onward(context, Principal::Tenants),
        )?;
        self.client
            .clone()
            .record_audit_event(request)
            .await
            .map_err(|status| ServiceError::from_remote("tenants", &status))?;
        Ok(())
    }
}

impl Agents {
    /// The service with oversight reads audited through `audit`; without
    /// it, admins read only their own conversations.
    #[must_use]
    pub fn with_oversight_audit(mut self, audit: OversightAudit) -> Self {
        self.oversight = Some(audit);
        self
    }

    /// Records that the caller (an admin) reads `conversation`, which is
    /// not theirs, through `rpc`; an error when it cannot be recorded.
    pub(super) async fn audit_oversight_read(
        &self,
        ctx: &MeshContext,
        conversation: &Conversation,
        rpc: &str,
    ) -> Result<(), ServiceError> {
        let Some(audit) = &self.oversight else {
            tracing::info!(
                org = %ctx.org_id(),
                conversation = %conversation.id,
                "oversight read refused: no audit log is wired"
            );
            return Err(ServiceError::not_found("conversation"));
        };
        if let Err(error) = audit.record(ctx, conversation, rpc).await {
            tracing::warn!(
                org = %ctx.org_id(),
                conversation = %conversation.id,
                error = %error,
                "oversight read refused: the audit entry was not written"
            );
            return Err(ServiceError::new(
                ErrorCode::Unavailable,
                "the read could not be recorded in the audit log; retry later",
            ));
        }
        tracing::info!(
            org = %ctx.org_id(),
            conversation = %conversation.id,
            owner = %conversation.created_by,
            "conversation read for oversight"
        );
        Ok(())
    }
}
