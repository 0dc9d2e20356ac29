//! Read reports: one report with the content of a version, and pages of
//! reports.

use chrono::{DateTime, Utc};
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::model::{Content, Page, Report, Status, Version};

use super::{DEFAULT_PAGE, MAX_PAGE, Reports, Result, not_found};

impl Reports {
    /// One report and one of its versions (the latest when `version` is 0).
    pub async fn get(
        &self,
        context: &MeshContext,
        id: Uuid,
        version: i32,
    ) -> Result<(Report, Option<(Version, Content)>)> {
        if version < 0 {
            return Err(
                ServiceError::invalid_field("version", "must be 0 (latest) or more").into(),
            );
        }
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, false).await?.ok_or_else(not_found)?;
        let number = if version == 0 {
            report.latest_version
        } else {
            version
        };
        if number == 0 {
            return Ok((report, None));
        }
        let found = tx
            .version(id, number)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        Ok((report, Some(found)))
    }

    /// A page of reports, newest first.
    pub async fn list(
        &self,
        context: &MeshContext,
        status: Option<Status>,
        country: Option<String>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Report>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!(
            "reports?status={}&country={}",
            status.map_or("", Status::as_str),
            country.as_deref().unwrap_or_default()
        );
        let after: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        let mut items = tx
            .reports(status, country.as_deref(), after.as_ref(), limit + 1)
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => {
                self.cursors
                    .encode(context.org_id(), &scope, &(last.created_at, last.id))
            }
            _ => String::new(),
        };
        Ok(Page { items, next_cursor })
    }
}
