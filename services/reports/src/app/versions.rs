//! Versions of a report, newest first, and the section-by-section diff of two
//! versions.

use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::diff::{self, SectionDiff};
use crate::model::{Page, Version};

use super::{DEFAULT_PAGE, MAX_PAGE, Reports, Result};

impl Reports {
    /// A page of versions, newest first.
    pub async fn versions(
        &self,
        context: &MeshContext,
        id: Uuid,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Version>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!("versions?report={id}");
        let before: Option<i32> = self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        self.existing(&mut tx, id).await?;
        let mut items = tx.versions(id, before, limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => self.cursors.encode(context.org_id(), &scope, &last.number),
            _ => String::new(),
        };
        Ok(Page { items, next_cursor })
    }

    /// A section-by-section diff of two versions.
    pub async fn diff(
        &self,
        context: &MeshContext,
        id: Uuid,
        from: i32,
        to: i32,
    ) -> Result<(Version, Version, Vec<SectionDiff>)> {
        // `from` and `to` are version numbers (the proto's rules). Any two
        // versions are diffed in the order asked: `to` older than `from`
        // shows what going back would change, and a version against itself
        // is an empty diff. Refusing those would be arbitrary, and the
        // OpenAPI document could not say so (two query parameters cannot
        // be compared in JSON Schema).
        let mut tx = self.begin(context).await?;
        self.existing(&mut tx, id).await?;
        let (old_version, old) = tx
            .version(id, from)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        let (new_version, new) = tx
            .version(id, to)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        Ok((old_version, new_version, diff::diff(&old, &new)))
    }
}
