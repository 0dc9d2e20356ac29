//! Audit of PII decisions: each decision an analyst took (in the outbox of
//! the transaction that stores the version or the export), and each write
//! the gate blocked (in a transaction of its own: nothing else changed).

use serde_json::json;
use treven_mesh::MeshContext;
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::PiiFinding;
use crate::pii::Decided;
use crate::store::OrgTx;

use super::{Reports, Result};

impl Reports {
    pub(super) async fn audit_decisions(
        &self,
        tx: &mut OrgTx,
        context: &MeshContext,
        report: Uuid,
        version: i32,
        decided: &[Decided],
        during: &str,
    ) -> Result<()> {
        for d in decided {
            self.audit(
                tx,
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
        self.audit_alone(
            context,
            vec![AuditEntry::report(
                "report.pii_blocked",
                report,
                json!({"during": during, "findings": ids, "types": types}),
            )],
        )
        .await
    }
}
