//! Notification inboxes: stored in the transaction of the change they
//! report ([`Reports::notify`]), pushed on `user:<subject>` after commit by
//! the use case, listed and marked read by their recipient only.

use chrono::{DateTime, Utc};
use serde_json::json;
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{NewNotification, Notification, Page};
use crate::store::OrgTx;

use super::{DEFAULT_PAGE, MAX_PAGE, Reports, Result};

impl Reports {
    /// Stores `new` for each recipient in `tx`, the transaction of the
    /// change it reports; push the result after commit with
    /// `Clients::push_notifications`.
    pub(super) async fn notify(
        &self,
        tx: &mut OrgTx,
        new: NewNotification,
    ) -> Result<Vec<Notification>> {
        Ok(tx.insert_notifications(&new).await?)
    }

    /// A page of the caller's notifications, newest first, and how many of
    /// theirs are unread.
    pub async fn notifications(
        &self,
        context: &MeshContext,
        unread_only: bool,
        limit: i32,
        cursor: &str,
    ) -> Result<(Page<Notification>, i64)> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        // The cursor is bound to the recipient: another user's cursor fails.
        let scope = format!(
            "notifications?user={}&unread={unread_only}",
            context.user_id()
        );
        let before: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.begin(context).await?;
        let mut items = tx
            .notifications(unread_only, before.as_ref(), limit + 1)
            .await?;
        let unread = tx.unread_notifications().await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => {
                self.cursors
                    .encode(context.org_id(), &scope, &(last.created_at, last.id))
            }
            _ => String::new(),
        };
        Ok((Page { items, next_cursor }, unread))
    }

    /// Marks one of the caller's notifications read (NOT_FOUND for anyone
    /// else's); audited as `notification.read` the first time.
    pub async fn mark_notification_read(
        &self,
        context: &MeshContext,
        id: Uuid,
    ) -> Result<Notification> {
        let mut tx = self.begin(context).await?;
        let (notification, was_unread) = tx
            .mark_notification_read(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("notification"))?;
        if was_unread {
            self.audit(
                &mut tx,
                context,
                AuditEntry {
                    action: "notification.read".to_owned(),
                    resource_type: "notification".to_owned(),
                    resource_id: id.to_string(),
                    details: json!({
                        "kind": notification.kind.as_str(),
                        "report_id": notification.report_id,
                    }),
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(notification)
    }

    /// Marks every unread notification of the caller read; how many.
    /// Audited as `notification.read_all` (on the user) when any was unread.
    pub async fn mark_all_notifications_read(&self, context: &MeshContext) -> Result<u64> {
        let mut tx = self.begin(context).await?;
        let marked = tx.mark_all_notifications_read().await?;
        if marked > 0 {
            self.audit(
                &mut tx,
                context,
                AuditEntry {
                    action: "notification.read_all".to_owned(),
                    resource_type: "user".to_owned(),
                    resource_id: context.user_id().to_owned(),
                    details: json!({"marked": marked}),
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(marked)
    }
}
