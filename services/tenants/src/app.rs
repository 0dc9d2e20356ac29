//! What the tenants service does, independent of the wire: role checks,
//! business rules, audit entries and pagination, over the [`PgStore`].
//!
//! [`Tenants`] is defined here with what every use case shares (role sets,
//! pagination); its methods live one file per use case group: `me` (the
//! caller and the lookup by subject), `organisation`, `users`, `partners`,
//! `access` (report-access grants) and `audit`.

mod access;
mod audit;
mod me;
mod organisation;
mod partners;
mod users;

use treven_mesh::pagination::CursorCodec;
use treven_mesh::{MeshContext, ServiceError};

use crate::model::Page;
use crate::store::{OrgTx, PgStore};
use crate::sync::IdentitySync;

/// Default page size.
pub const DEFAULT_PAGE: u32 = 50;
/// Largest page size.
pub const MAX_PAGE: u32 = 100;

type Result<T> = std::result::Result<T, ServiceError>;

/// The tenants service.
#[derive(Debug, Clone)]
pub struct Tenants {
    store: PgStore,
    cursors: CursorCodec,
    /// The Cognito sync, when a user pool is configured.
    identity: Option<IdentitySync>,
}

/// Turns `limit + 1` fetched rows into a page with the cursor of its last item.
fn paginate<T, P: serde::Serialize>(
    cursors: &CursorCodec,
    context: &MeshContext,
    scope: &str,
    mut items: Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> P,
) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => cursors.encode(context.org_id(), scope, &position(last)),
        _ => String::new(),
    };
    Page { items, next_cursor }
}

impl Tenants {
    /// The service over `store`, signing cursors with `cursors`.
    pub fn new(store: PgStore, cursors: CursorCodec) -> Self {
        Self {
            store,
            cursors,
            identity: None,
        }
    }

    /// Users' Cognito accounts follow their tenants rows through `identity`.
    pub fn with_identity(mut self, identity: IdentitySync) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Queues, in `tx`, the Cognito sync of user `user_id` acting on the
    /// Cognito user `username`; `None` when no user pool is configured.
    async fn queue_identity_sync(
        &self,
        tx: &mut OrgTx,
        user_id: uuid::Uuid,
        username: &str,
    ) -> Result<Option<uuid::Uuid>> {
        match &self.identity {
            Some(identity) => Ok(Some(
                tx.enqueue_cognito_sync(user_id, username, identity.options().grace)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// After the commit that queued `job` in `org`: applies it now.
    async fn sync_identity_now(
        &self,
        context: &MeshContext,
        org: treven_mesh::OrgId,
        job: Option<uuid::Uuid>,
    ) {
        if let (Some(identity), Some(job)) = (&self.identity, job) {
            identity
                .apply_now(org, context.user_id(), context.request_id(), job)
                .await;
        }
    }
}
