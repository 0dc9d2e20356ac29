//! Create a report: stored in `generating` with its generation job and its
//! audit entry (outbox), in one transaction.

use serde_json::json;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{Report, Scope};

use super::{Reports, Result};

impl Reports {
    /// Starts a report and its generation job (analysts, admins).
    pub async fn create(
        &self,
        context: &MeshContext,
        scope: Scope,
        document_ids: Vec<Uuid>,
    ) -> Result<Report> {
        if document_ids.len() > self.limits.max_documents {
            return Err(ServiceError::invalid_field(
                "document_ids",
                format!("at most {} documents", self.limits.max_documents),
            )
            .into());
        }
        let mut tx = self.begin(context).await?;
        let report = tx
            .insert_report_with_job(&scope, &document_ids, context.roles(), context.request_id())
            .await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.create",
                report.id,
                json!({
                    "country": scope.country,
                    "region": scope.region,
                    "sector": scope.sector,
                    "exploitation_type": scope.exploitation_type.as_str(),
                    "client_type": scope.client_type.as_str(),
                    "documents": document_ids.len(),
                }),
            ),
        )
        .await?;
        self.commit(tx).await?;
        tracing::info!(report_id = %report.id, org_id = %report.org_id, "report created, generation queued");
        self.wake.notify_waiters();
        self.clients
            .publish(
                context.org_id(),
                report.id,
                json!({"report_id": report.id, "status": "generating"}),
            )
            .await;
        Ok(report)
    }
}
