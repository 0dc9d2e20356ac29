//! Read reports: one report with the content of a version, and pages of
//! reports.

use chrono::{DateTime, Utc};
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::model::{Content, Page, Report, Status, Version};
use crate::store::{ReportFilter, SearchPosition};

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

    /// A page of reports: newest first, or, with a search `query`, best
    /// match first (see [`crate::store`]'s `search_reports`).
    pub async fn list(
        &self,
        context: &MeshContext,
        filter: ReportFilter<'_>,
        query: Option<&str>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Report>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        // A cursor is bound to the filters and the query it was made for
        // (a plain list keeps the scope it had before search existed, so
        // cursors handed out then still work).
        let mut scope = format!(
            "reports?status={}&country={}",
            filter.status.map_or("", Status::as_str),
            filter.country.unwrap_or_default(),
        );
        if filter.include_archived {
            scope.push_str("&archived=1");
        }
        if let Some(query) = query {
            scope.push_str("&q=");
            scope.push_str(query);
        }
        let org = context.org_id();
        let mut tx = self.begin(context).await?;
        let (items, next_cursor) = match query {
            None => {
                let after: Option<(DateTime<Utc>, Uuid)> =
                    self.cursors.decode(org, &scope, cursor)?;
                let mut items = tx.reports(&filter, after.as_ref(), limit + 1).await?;
                let more = items.len() > limit as usize;
                items.truncate(limit as usize);
                let next = match (more, items.last()) {
                    (true, Some(last)) => {
                        self.cursors
                            .encode(org, &scope, &(last.created_at, last.id))
                    }
                    _ => String::new(),
                };
                (items, next)
            }
            Some(query) => {
                let after: Option<SearchPosition> = self.cursors.decode(org, &scope, cursor)?;
                let mut ranked = tx
                    .search_reports(query, &filter, after.as_ref(), limit + 1)
                    .await?;
                let more = ranked.len() > limit as usize;
                ranked.truncate(limit as usize);
                let next = match (more, ranked.last()) {
                    (true, Some((last, rank))) => self.cursors.encode(
                        org,
                        &scope,
                        &SearchPosition {
                            rank: *rank,
                            created_at: last.created_at,
                            id: last.id,
                        },
                    ),
                    _ => String::new(),
                };
                (ranked.into_iter().map(|(report, _)| report).collect(), next)
            }
        };
        Ok(Page { items, next_cursor })
    }
}
