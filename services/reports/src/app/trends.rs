//! Trends for the map, and how an approved version turns into trends.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use treven_mesh::MeshContext;
use treven_mesh::pagination::page_limit;
use uuid::Uuid;

use crate::model::{Content, ExploitationType, Page, Report, Section, SourceRef, Trend};
use crate::quality;

use super::{Reports, Result, TREND_PAGE};

impl Reports {
    /// A page of trends by country then most recent.
    pub async fn trends(
        &self,
        context: &MeshContext,
        country: Option<String>,
        exploitation_type: Option<ExploitationType>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Trend>> {
        let limit = page_limit(limit, TREND_PAGE.0, TREND_PAGE.1)?;
        let scope = format!(
            "trends?country={}&type={}",
            country.as_deref().unwrap_or_default(),
            exploitation_type.map_or("", ExploitationType::as_str)
        );
        let after: Option<(String, DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        let mut items = tx
            .trends(
                country.as_deref(),
                exploitation_type,
                after.as_ref(),
                limit + 1,
            )
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => self.cursors.encode(
                context.org_id(),
                &scope,
                &(last.country.clone(), last.updated_at, last.id),
            ),
            _ => String::new(),
        };
        Ok(Page { items, next_cursor })
    }
}

/// Trends from the key judgements of an approved version: one per
/// judgement, about the report's country and exploitation type, with the
/// sources its markers cite.
pub fn derive_trends(
    report: &Report,
    version: i32,
    content: &Content,
    at: DateTime<Utc>,
) -> Vec<Trend> {
    if report.scope.country.is_empty() {
        return Vec::new();
    }
    let mut tags: Vec<String> = vec![report.scope.exploitation_type.as_str().to_owned()];
    for extra in [&report.scope.sector, &report.scope.region] {
        let tag = extra.trim().to_lowercase();
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    content
        .key_judgements
        .iter()
        .filter(|kj| !kj.text.trim().is_empty())
        .map(|kj| {
            let cited: HashSet<&str> = quality::markers(&kj.text).into_iter().collect();
            let sources: Vec<SourceRef> = content
                .citations
                .iter()
                .filter(|c| {
                    c.section == Section::KeyJudgements.as_str() && cited.contains(c.id.as_str())
                })
                .map(|c| c.source.clone())
                .collect();
            let mut statement = kj.text.clone();
            for marker in quality::markers(&kj.text) {
                statement = statement.replace(&format!("[{marker}]"), "");
            }
            let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            let statement = statement.replace(" .", ".").replace(" ,", ",");
            Trend {
                id: Uuid::now_v7(),
                country: report.scope.country.clone(),
                exploitation_type: report.scope.exploitation_type,
                statement,
                confidence: kj.confidence,
                tags: tags.clone(),
                sources,
                report_id: report.id,
                report_version: version,
                updated_at: at,
            }
        })
        .collect()
}
