//! Sources and their trust scores: upserting and searching.

use chrono::{DateTime, Utc};
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};

use super::{DEFAULT_PAGE, Documents, MAX_PAGE, Result};
use crate::sources::{Source, SourceQuery, TrustScore};

impl Documents {
    /// Creates or updates a source (keyed by its locator) and scores it.
    pub async fn upsert_source(
        &self,
        context: &MeshContext,
        mut source: Source,
    ) -> Result<(Source, TrustScore)> {
        if let Some(existing) = self.meta.source(context.org_id(), &source.id).await? {
            source.created_at = existing.created_at;
        }
        self.meta.put_source(context.org_id(), &source).await?;
        let score = source.trust(Utc::now());
        Ok((source, score))
    }

    /// Sources matching `query`, by trust score then recency.
    pub async fn search_sources(
        &self,
        context: &MeshContext,
        query: SourceQuery,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<(Source, TrustScore)>, String)> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)? as usize;
        let scope = format!(
            "sources?{}",
            serde_json::to_string(&query).map_err(ServiceError::internal)?
        );
        let after: Option<(u8, Option<DateTime<Utc>>, String)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let now = Utc::now();
        let mut ranked: Vec<(Source, TrustScore)> = self
            .meta
            .sources(context.org_id())
            .await?
            .into_iter()
            .filter(|s| s.matches(&query))
            .map(|s| {
                let score = s.trust(now);
                (s, score)
            })
            .filter(|(_, score)| score.total >= query.min_trust)
            .collect();
        let rank = |(s, score): &(Source, TrustScore)| {
            (
                std::cmp::Reverse(score.total),
                std::cmp::Reverse(s.published_at),
                s.id.clone(),
            )
        };
        ranked.sort_by_key(rank);
        if let Some((total, published, id)) = after {
            let position = (std::cmp::Reverse(total), std::cmp::Reverse(published), id);
            ranked.retain(|entry| rank(entry) > position);
        }
        let more = ranked.len() > limit;
        ranked.truncate(limit);
        let next = match (more, ranked.last()) {
            (true, Some((s, score))) => self.cursors.encode(
                context.org_id(),
                &scope,
                &(score.total, s.published_at, s.id.clone()),
            ),
            _ => String::new(),
        };
        Ok((ranked, next))
    }
}
