//! The trends derived from approved reports, for the map.

use chrono::{DateTime, Utc};
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use crate::model::{Confidence, ExploitationType, SourceRef, Trend};

use super::{OrgTx, Result, StoreError, column, from_json, to_json};

impl OrgTx {
    /// Replaces the trends derived from `report`.
    pub async fn replace_trends(&mut self, report: Uuid, trends: &[Trend]) -> Result<()> {
        sqlx::query("DELETE FROM trends WHERE org_id = $1 AND report_id = $2")
            .bind(self.tx.org_id().as_uuid())
            .bind(report)
            .execute(&mut *self.tx)
            .traced(trace::postgres("reports.replace_trends", "DELETE"))
            .await?;
        for trend in trends {
            sqlx::query(
                "INSERT INTO trends (id, org_id, report_id, report_version, country, exploitation_type, \
                     statement, confidence, tags, sources, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(trend.id)
            .bind(self.tx.org_id().as_uuid())
            .bind(report)
            .bind(trend.report_version)
            .bind(&trend.country)
            .bind(trend.exploitation_type.as_str())
            .bind(&trend.statement)
            .bind(trend.confidence.as_str())
            .bind(to_json(&trend.tags)?)
            .bind(to_json(&trend.sources)?)
            .bind(trend.updated_at)
            .execute(&mut *self.tx)
            .traced(trace::postgres("reports.replace_trends", "INSERT"))
            .await?;
        }
        Ok(())
    }

    /// Up to `limit` trends after `after` (country, updated_at, id), by
    /// country then most recently updated.
    pub async fn trends(
        &mut self,
        country: Option<&str>,
        exploitation_type: Option<ExploitationType>,
        after: Option<&(String, DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Trend>> {
        let rows: Vec<TrendRow> = sqlx::query_as(
            "SELECT id, report_id, report_version, country, exploitation_type, statement, confidence, \
                    tags, sources, updated_at FROM trends WHERE org_id = $1 \
               AND ($2::text IS NULL OR country = $2) AND ($3::text IS NULL OR exploitation_type = $3) \
               AND ($4::text IS NULL OR country > $4 OR (country = $4 AND (updated_at, id) < ($5, $6))) \
             ORDER BY country, updated_at DESC, id DESC LIMIT $7",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(country)
        .bind(exploitation_type.map(ExploitationType::as_str))
        .bind(after.map(|(c, _, _)| c.as_str()))
        .bind(after.map(|(_, at, _)| *at))
        .bind(after.map(|(_, _, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.trends", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

#[derive(sqlx::FromRow)]
struct TrendRow {
    id: Uuid,
    report_id: Uuid,
    report_version: i32,
    country: String,
    exploitation_type: String,
    statement: String,
    confidence: String,
    tags: serde_json::Value,
    sources: serde_json::Value,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TrendRow> for Trend {
    type Error = StoreError;
    fn try_from(row: TrendRow) -> Result<Self> {
        let confidence = Confidence::from_name(&row.confidence);
        Ok(Trend {
            id: row.id,
            country: row.country,
            exploitation_type: column("exploitation_type", &row.exploitation_type)?,
            statement: row.statement,
            confidence,
            tags: from_json("tags", row.tags)?,
            sources: from_json::<Vec<SourceRef>>("sources", row.sources)?,
            report_id: row.report_id,
            report_version: row.report_version,
            updated_at: row.updated_at,
        })
    }
}
