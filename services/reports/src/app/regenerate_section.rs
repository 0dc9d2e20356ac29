//! Regenerate a section: the generator rewrites it, personal data in its text
//! is redacted, and it is saved as a new version.

use serde_json::json;
use treven_mesh::MeshContext;
use uuid::Uuid;

use crate::clients::{AuditEntry, GenerationRequest};
use crate::model::{Content, PiiDecision, Section, Version, VersionCause};

use super::{Reports, Result};

impl Reports {
    /// Asks the generator to rewrite one section and saves it (analysts, admins).
    #[allow(clippy::too_many_arguments)]
    pub async fn regenerate_section(
        &self,
        context: &MeshContext,
        id: Uuid,
        section: Section,
        reason: String,
        base_version: i32,
        instructions: String,
        decisions: Vec<PiiDecision>,
        deadline: std::time::Duration,
    ) -> Result<(Version, Content)> {
        // Read without holding a lock while the generator works.
        let (report, current, documents) = {
            let mut tx = self.begin(context).await?;
            let (report, _, content) = self
                .editable(&mut tx, id, base_version, "base_version")
                .await?;
            let documents = tx.document_ids(id).await?;
            (report, content, documents)
        };
        let instructions = if instructions.trim().is_empty() {
            reason.clone()
        } else {
            format!("{reason}\n\n{instructions}")
        };
        let request = GenerationRequest {
            report: &report,
            documents: &documents,
            sections: &[section],
            current: Some(&current),
            instructions: &instructions,
        };
        let mut generated = self
            .clients
            .generate_section(context, request, section, deadline)
            .await?;
        // Personal data in the model's text is redacted automatically, as
        // during generation: a second call would word it differently, so the
        // finding ids an analyst could decide on would never match again.
        let redacted = crate::pii::redact_all(&mut generated, section)?;
        // Audited with the version that keeps the redacted text, in its
        // transaction: nothing is recorded if the save fails.
        let automatic: Vec<AuditEntry> = redacted
            .iter()
            .map(|decided| {
                AuditEntry::report(
                    "report.pii_decision",
                    id,
                    json!({
                        "finding_id": decided.finding.id,
                        "type": decided.finding.kind.as_str(),
                        "section": decided.finding.section,
                        "field_path": decided.finding.field_path,
                        "action": "redact",
                        "automatic": true,
                        "during": "regenerated",
                    }),
                )
            })
            .collect();
        let mut tx = self.begin(context).await?;
        let (report, previous, old) = self
            .editable(&mut tx, id, base_version, "base_version")
            .await?;
        let mut new = old.clone();
        new.replace_section(section, &generated);
        self.save_section(
            context,
            tx,
            report,
            previous,
            old,
            new,
            section,
            VersionCause::Regenerated,
            &reason,
            &decisions,
            automatic,
        )
        .await
    }
}
