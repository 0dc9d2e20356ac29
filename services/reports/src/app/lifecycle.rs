//! Lifecycle: archive, unarchive and (soft) delete a report, each audited
//! through the outbox in the transaction of the change.
//!
//! Archiving only changes visibility: an archived report leaves the default
//! list and search (`include_archived` brings it back) and stays readable,
//! editable and shareable. Deleting is for admins and is final for the
//! organisation: the report is NOT_FOUND for every read, list and search,
//! its trends leave the map and its partner links are refused; its rows and
//! versions stay (with who deleted it and when) and the exported files in
//! documents are kept.

use serde_json::json;
use treven_mesh::{MeshContext, Role};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{Report, Status};

use super::{Reports, Result, failed_precondition, not_found};

impl Reports {
    /// Archives (`archived`) or unarchives a report (analysts, admins).
    /// Archiving an archived report (or unarchiving a live one) changes
    /// nothing and is not audited again.
    pub async fn set_archived(
        &self,
        context: &MeshContext,
        id: Uuid,
        archived: bool,
    ) -> Result<Report> {
        context.require_any(Role::EDITORS)?;
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.archival.is_some() == archived {
            return Ok(report);
        }
        let updated = tx.set_archived(id, archived).await?.ok_or_else(not_found)?;
        let action = if archived {
            "report.archive"
        } else {
            "report.unarchive"
        };
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(action, id, json!({"status": report.status.as_str()})),
        )
        .await?;
        self.commit(tx).await?;
        tracing::info!(report_id = %id, archived, "report archival changed");
        Ok(updated)
    }

    /// Deletes a report (admins): see the module documentation. A report
    /// still generating is FAILED_PRECONDITION (its job would write to it).
    pub async fn delete(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        context.require_any(Role::ADMINS)?;
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.status == Status::Generating {
            return Err(failed_precondition(
                "the report is still generating; delete it once generation has finished",
            )
            .into());
        }
        if !tx.mark_deleted(id).await? {
            return Err(not_found().into());
        }
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.delete",
                id,
                json!({
                    "status": report.status.as_str(),
                    "latest_version": report.latest_version,
                    "exports_kept": true,
                }),
            ),
        )
        .await?;
        self.commit(tx).await?;
        tracing::info!(report_id = %id, "report deleted");
        Ok(())
    }
}
