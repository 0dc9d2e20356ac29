//! Audit of PII decisions: each decision an analyst took, and each write the
//! gate blocked.

use serde_json::json;
use treven_mesh::MeshContext;
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::PiiFinding;
use crate::pii::Decided;

use super::{Reports, Result};

impl Reports {
    pub(super) async fn audit_decisions(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: i32,
        decided: &[Decided],
        during: &str,
    ) -> Result<()> {
        for d in decided {
            self.audit(
                context,
                AuditEntry::report(
                    "report.pii_decision",
                    report,
                    json!({
                        "finding_id": d.finding.id,
                        "type": d.finding.kind.as_str(),
                        "section": d.finding.section,
                        "field_path": d.finding.field_path,
                        "action": match d.decision.action {
                            crate::model::PiiAction::Redact => "redact",
                            crate::model::PiiAction::Keep => "keep",
                        },
                        "justification": d.decision.justification,
                        "version": version,
                        "during": during,
                    }),
                ),
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn audit_blocked(
        &self,
        context: &MeshContext,
        report: Uuid,
        findings: &[PiiFinding],
        during: &str,
    ) -> Result<()> {
        let types: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        self.audit(
            context,
            AuditEntry::report(
                "report.pii_blocked",
                report,
                json!({"during": during, "findings": ids, "types": types}),
            ),
        )
        .await
    }
}
