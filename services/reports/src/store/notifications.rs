//! Notification inboxes, read and written inside an [`OrgTx`]. Rows are
//! written for any member of the organisation (in the transaction of the
//! change they report); every read and mark is confined to the
//! transaction's actor, the recipient.

use chrono::{DateTime, Utc};
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use crate::model::{NewNotification, Notification, NotificationKind};

use super::{OrgTx, Result, column};

const NOTIFICATION_COLUMNS: &str =
    "id, recipient_id, kind, report_id, comment_id, actor_id, version, created_at, read_at";

impl OrgTx {
    /// Stores `new` for each of its recipients, acted by the transaction's
    /// actor.
    pub async fn insert_notifications(
        &mut self,
        new: &NewNotification,
    ) -> Result<Vec<Notification>> {
        if new.recipients.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = new.recipients.iter().map(|_| Uuid::now_v7()).collect();
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "INSERT INTO notifications (id, org_id, recipient_id, kind, report_id, comment_id, actor_id, version) \
             SELECT n.id, $1, n.recipient, $4, $5, $6, $7, $8 \
             FROM unnest($2::uuid[], $3::text[]) AS n(id, recipient) \
             RETURNING {NOTIFICATION_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(&ids)
        .bind(&new.recipients)
        .bind(new.kind.as_str())
        .bind(new.report_id)
        .bind(new.comment_id)
        .bind(self.tx.actor_id().to_owned())
        .bind(new.version)
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.insert_notifications", "INSERT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Up to `limit` of the actor's notifications before `before`
    /// (created_at, id), newest first.
    pub async fn notifications(
        &mut self,
        unread_only: bool,
        before: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE org_id = $1 AND recipient_id = $2 AND (NOT $3 OR read_at IS NULL) \
               AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
             ORDER BY created_at DESC, id DESC LIMIT $6"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(self.tx.actor_id().to_owned())
        .bind(unread_only)
        .bind(before.map(|(at, _)| *at))
        .bind(before.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.notifications", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// How many of the actor's notifications are unread.
    pub async fn unread_notifications(&mut self) -> Result<i64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM notifications \
             WHERE org_id = $1 AND recipient_id = $2 AND read_at IS NULL",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(self.tx.actor_id().to_owned())
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.unread_notifications", "SELECT"))
        .await?;
        Ok(count)
    }

    /// Marks the actor's notification `id` read (keeping the first read
    /// time): the notification and whether it was unread. `None` when the
    /// actor has no such notification.
    pub async fn mark_notification_read(
        &mut self,
        id: Uuid,
    ) -> Result<Option<(Notification, bool)>> {
        let row: Option<(bool,)> = sqlx::query_as(
            "SELECT read_at IS NULL FROM notifications \
             WHERE org_id = $1 AND recipient_id = $2 AND id = $3 FOR UPDATE",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(self.tx.actor_id().to_owned())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.mark_notification_read", "SELECT"))
        .await?;
        let Some((unread,)) = row else {
            return Ok(None);
        };
        let row: NotificationRow = sqlx::query_as(&format!(
            "UPDATE notifications SET read_at = COALESCE(read_at, clock_timestamp()) \
             WHERE org_id = $1 AND recipient_id = $2 AND id = $3 RETURNING {NOTIFICATION_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(self.tx.actor_id().to_owned())
        .bind(id)
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.mark_notification_read", "UPDATE"))
        .await?;
        Ok(Some((row.try_into()?, unread)))
    }

    /// Marks every unread notification of the actor read; how many.
    pub async fn mark_all_notifications_read(&mut self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE notifications SET read_at = clock_timestamp() \
             WHERE org_id = $1 AND recipient_id = $2 AND read_at IS NULL",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(self.tx.actor_id().to_owned())
        .execute(&mut *self.tx)
        .traced(trace::postgres(
            "reports.mark_all_notifications_read",
            "UPDATE",
        ))
        .await?;
        Ok(done.rows_affected())
    }
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: Uuid,
    recipient_id: String,
    kind: String,
    report_id: Uuid,
    comment_id: Option<Uuid>,
    actor_id: String,
    version: i32,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = super::StoreError;
    fn try_from(row: NotificationRow) -> Result<Self> {
        Ok(Notification {
            id: row.id,
            recipient_id: row.recipient_id,
            kind: column::<NotificationKind>("kind", &row.kind)?,
            report_id: row.report_id,
            comment_id: row.comment_id,
            actor_id: row.actor_id,
            version: row.version,
            created_at: row.created_at,
            read_at: row.read_at,
        })
    }
}
