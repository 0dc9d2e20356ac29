//! Review comments, read and written inside an [`OrgTx`]. A thread's
//! resolution lives on its first comment; reads join it onto every comment
//! of the thread.

use chrono::{DateTime, Utc};
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use crate::model::{Comment, PiiDecision, Section};

use super::{OrgTx, Result, from_json, to_json};

const COMMENT_COLUMNS: &str = "c.id, c.report_id, c.version, c.section, c.thread_id, c.parent_id, \
     c.author_id, c.body, c.pii_decisions, t.resolved_by, t.resolved_at, c.created_at";
const COMMENT_FROM: &str = "report_comments c \
     JOIN report_comments t ON t.org_id = c.org_id AND t.id = c.thread_id";

/// A comment about to be stored.
#[derive(Debug, Clone)]
pub struct NewComment<'a> {
    /// The report.
    pub report_id: Uuid,
    /// The version commented on.
    pub version: i32,
    /// The section, if anchored to one.
    pub section: Option<Section>,
    /// The comment replied to and its thread, for a reply.
    pub reply_to: Option<(Uuid, Uuid)>,
    /// The text (after the PII gate).
    pub body: &'a str,
    /// The PII decisions taken.
    pub pii_decisions: &'a [PiiDecision],
}

/// Which comments of a report a list returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommentFilter {
    /// Only comments on this version.
    pub version: Option<i32>,
    /// Only comments of unresolved threads.
    pub unresolved_only: bool,
}

impl OrgTx {
    /// Stores a comment by the transaction's actor.
    pub async fn insert_comment(&mut self, new: &NewComment<'_>) -> Result<Comment> {
        let id = Uuid::now_v7();
        let (parent, thread) = match new.reply_to {
            Some((parent, thread)) => (Some(parent), thread),
            None => (None, id),
        };
        sqlx::query(
            "INSERT INTO report_comments (id, org_id, report_id, version, section, thread_id, parent_id, \
                author_id, body, pii_decisions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(self.tx.org_id().as_uuid())
        .bind(new.report_id)
        .bind(new.version)
        .bind(new.section.map(|s| s.as_str()))
        .bind(thread)
        .bind(parent)
        .bind(self.tx.actor_id().to_owned())
        .bind(new.body)
        .bind(to_json(&new.pii_decisions)?)
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.insert_comment", "INSERT"))
        .await?;
        self.comment(new.report_id, id)
            .await?
            .ok_or_else(|| super::StoreError::Internal(sqlx::Error::RowNotFound))
    }

    /// One comment of `report`, with its thread's resolution.
    pub async fn comment(&mut self, report: Uuid, id: Uuid) -> Result<Option<Comment>> {
        let row: Option<CommentRow> = sqlx::query_as(&format!(
            "SELECT {COMMENT_COLUMNS} FROM {COMMENT_FROM} \
             WHERE c.org_id = $1 AND c.report_id = $2 AND c.id = $3"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.comment", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Up to `limit` comments of `report` after `after` (created_at, id),
    /// oldest first.
    pub async fn comments(
        &mut self,
        report: Uuid,
        filter: CommentFilter,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Comment>> {
        let rows: Vec<CommentRow> = sqlx::query_as(&format!(
            "SELECT {COMMENT_COLUMNS} FROM {COMMENT_FROM} \
             WHERE c.org_id = $1 AND c.report_id = $2 \
               AND ($3::integer IS NULL OR c.version = $3) \
               AND (NOT $4 OR t.resolved_at IS NULL) \
               AND ($5::timestamptz IS NULL OR (c.created_at, c.id) > ($5, $6)) \
             ORDER BY c.created_at, c.id LIMIT $7"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(filter.version)
        .bind(filter.unresolved_only)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.comments", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The authors of the comments of `thread`, in the order they wrote.
    pub async fn thread_participants(&mut self, thread: Uuid) -> Result<Vec<String>> {
        let authors: Vec<String> = sqlx::query_scalar(
            "SELECT author_id FROM report_comments WHERE org_id = $1 AND thread_id = $2 \
             GROUP BY author_id ORDER BY min(created_at) LIMIT 200",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(thread)
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.thread_participants", "SELECT"))
        .await?;
        Ok(authors)
    }

    /// Resolves `thread` as the transaction's actor (`resolve`), or reopens
    /// it; locks and returns its first comment. `None` when the thread is
    /// not one of `report`'s.
    pub async fn set_thread_resolved(
        &mut self,
        report: Uuid,
        thread: Uuid,
        resolve: bool,
    ) -> Result<Option<Comment>> {
        let updated = sqlx::query(
            "UPDATE report_comments SET \
                resolved_by = CASE WHEN $4 THEN $5 ELSE NULL END, \
                resolved_at = CASE WHEN $4 THEN clock_timestamp() ELSE NULL END, \
                updated_at = clock_timestamp() \
             WHERE org_id = $1 AND report_id = $2 AND id = $3 AND thread_id = id",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(thread)
        .bind(resolve)
        .bind(self.tx.actor_id().to_owned())
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.set_thread_resolved", "UPDATE"))
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        self.comment(report, thread).await
    }

    /// Which of `ids` are comments of `report`.
    pub async fn existing_comments(&mut self, report: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        let found: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM report_comments WHERE org_id = $1 AND report_id = $2 AND id = ANY($3)",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(report)
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.existing_comments", "SELECT"))
        .await?;
        Ok(found)
    }
}

#[derive(sqlx::FromRow)]
struct CommentRow {
    id: Uuid,
    report_id: Uuid,
    version: i32,
    section: Option<String>,
    thread_id: Uuid,
    parent_id: Option<Uuid>,
    author_id: String,
    body: String,
    pii_decisions: serde_json::Value,
    resolved_by: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<CommentRow> for Comment {
    type Error = super::StoreError;
    fn try_from(row: CommentRow) -> Result<Self> {
        let section = match row.section {
            Some(raw) => Some(raw.parse::<Section>().map_err(|()| {
                super::StoreError::Internal(sqlx::Error::Decode(format!("section {raw:?}").into()))
            })?),
            None => None,
        };
        Ok(Comment {
            id: row.id,
            report_id: row.report_id,
            version: row.version,
            section,
            thread_id: row.thread_id,
            parent_id: row.parent_id,
            author_id: row.author_id,
            body: row.body,
            pii_decisions: from_json("pii_decisions", row.pii_decisions)?,
            resolved: row.resolved_by.zip(row.resolved_at),
            created_at: row.created_at,
        })
    }
}
