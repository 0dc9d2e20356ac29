//! AWS plumbing: clients built from one `SdkConfig`, S3 keys that always
//! stay inside the caller's organisation prefix, and SDK errors classified
//! for clients (UNAVAILABLE for outages and throttling, never SDK text) by
//! [`treven_mesh::aws::classify`].

use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

use crate::model::{ArtifactFormat, FileName};

/// An AWS call failure: was it the dependency being unavailable (network,
/// timeouts, 5xx, throttling) or something else? (The mesh's one
/// classification, shared with the agents service.)
pub use treven_mesh::aws::classify;

/// S3 keys of the layout in DOMAIN.md. Every key starts with `{org}/`, and
/// the org always comes from the verified mesh context.
pub mod keys {
    use super::*;

    /// `{org}/uploads/{upload}/{filename}`
    pub fn upload(org: OrgId, upload: Uuid, file: &FileName) -> String {
        format!("{org}/uploads/{upload}/{}", file.as_str())
    }

    /// `{org}/reports/{report}/evidence/{source}.json`
    pub fn evidence(org: OrgId, report: Uuid, source_id: &str) -> String {
        format!("{org}/reports/{report}/evidence/{source_id}.json")
    }

    /// `{org}/exports/{export}/bundle.zip`
    pub fn export(org: OrgId, export: Uuid) -> String {
        format!("{org}/exports/{export}/bundle.zip")
    }

    /// `{org}/reports/{report}/v{n}/report.{ext}`
    pub fn artifact(org: OrgId, report: Uuid, version: u32, format: ArtifactFormat) -> String {
        format!(
            "{org}/reports/{report}/v{version}/report.{}",
            format.extension()
        )
    }

    /// Refuses (as a bug) any key outside `org`'s prefix: the last guard
    /// before a presigned URL leaves the service.
    pub fn ensure_inside(org: OrgId, key: &str) -> Result<(), ServiceError> {
        let prefix = format!("{org}/");
        if key.starts_with(&prefix) && !key.contains("/../") {
            Ok(())
        } else {
            Err(ServiceError::internal(anyhow::anyhow!(
                "refusing S3 key outside the organisation prefix"
            )))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_follow_the_layout_and_stay_in_the_org() {
            let org = OrgId::new(Uuid::nil());
            let id = Uuid::nil();
            let file = FileName::parse("f", "a b.pdf").expect("valid");
            assert_eq!(
                upload(org, id, &file),
                format!("{org}/uploads/{id}/a b.pdf")
            );
            assert_eq!(
                artifact(org, id, 3, ArtifactFormat::Docx),
                format!("{org}/reports/{id}/v3/report.docx")
            );
            assert!(ensure_inside(org, &evidence(org, id, "abc")).is_ok());
            let other = OrgId::new(Uuid::now_v7());
            assert!(ensure_inside(other, &export(org, id)).is_err());
        }
    }
}
