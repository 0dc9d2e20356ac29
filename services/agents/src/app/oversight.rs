//! Oversight: an admin reading a conversation they did not start. Every
//! such read is first recorded in the organisation's audit log (tenants'
//! `RecordAuditEvent`, called by the agents service acting for the admin,
//! so the entry names the admin as the actor) as
//! [`OVERSIGHT_READ_ACTION`] on `conversation/<id>` with the owner in its
//! details. Nothing is shown unless the entry is written: with no audit
//! log wired the read answers NOT_FOUND, and a failed write UNAVAILABLE.

use serde_json::json;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};

use super::Agents;
use super::audit::{AuditEntry, AuditLog};
use crate::model::Conversation;

/// The audit action of an admin's read of another user's conversation.
pub const OVERSIGHT_READ_ACTION: &str = "conversation.read_for_oversight";
/// The audit resource type of conversations.
pub const CONVERSATION_RESOURCE: &str = "conversation";

impl Agents {
    /// The service with its audit log: oversight reads, PII decisions on
    /// chat messages and redactions of model output are recorded there.
    /// Without it admins read only their own conversations and messages
    /// with PII decisions are refused (UNAVAILABLE).
    #[must_use]
    pub fn with_audit_log(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
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
        let Some(audit) = &self.audit else {
            tracing::info!(
                org = %ctx.org_id(),
                conversation = %conversation.id,
                "oversight read refused: no audit log is wired"
            );
            return Err(ServiceError::not_found("conversation"));
        };
        let entry = AuditEntry {
            action: OVERSIGHT_READ_ACTION,
            resource_type: CONVERSATION_RESOURCE,
            resource_id: conversation.id.to_string(),
            details: json!({ "owner": conversation.created_by, "rpc": rpc }),
        };
        if let Err(error) = audit.record(ctx, entry).await {
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
