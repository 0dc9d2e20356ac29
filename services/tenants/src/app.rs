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
use crate::store::PgStore;

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
        Self { store, cursors }
    }
}
