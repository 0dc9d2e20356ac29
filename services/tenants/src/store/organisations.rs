//! The `organisations` table: the caller's organisation, and the operator's
//! ensure and listing.

use chrono::{DateTime, Utc};
use treven_mesh::OrgId;
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use super::{OrgTx, PgStore, Result, StoreError, column};
use crate::model::{Name, OrgKind, Organisation, OrganisationChanges};

const ORG_COLUMNS: &str = "id, name, kind, settings, created_at, updated_at";

impl PgStore {
    /// Operator action: the organisation named `name`, created with `kind`
    /// if there is none. Looking up by name crosses organisations: it runs
    /// as `treven_operator` ([`treven_mesh::postgres::begin_operator`]),
    /// which only the owner may enter and which may only find and create
    /// organisations.
    pub async fn admin_ensure_org(&self, name: &Name, kind: OrgKind) -> Result<Organisation> {
        let id = Uuid::now_v7();
        let mut tx = treven_mesh::postgres::begin_operator(&self.pool).await?;
        sqlx::query(
            "INSERT INTO organisations (id, name, kind) VALUES ($1, $2, $3) \
             ON CONFLICT ((lower(name))) DO NOTHING",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(kind.as_str())
        .execute(&mut *tx)
        .traced(trace::postgres("tenants.admin_ensure_org", "INSERT"))
        .await?;
        let row: OrgRow = sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM organisations WHERE lower(name) = lower($1)"
        ))
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .traced(trace::postgres("tenants.admin_ensure_org", "SELECT"))
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// Operator action: organisations with their settings, oldest first —
    /// one when `only` is given (none if it does not exist), else every one
    /// (for the retention job, `treven admin retention`). Runs as
    /// `treven_operator`, like [`PgStore::admin_ensure_org`], which may
    /// read organisations and nothing else.
    pub async fn admin_organisations(&self, only: Option<OrgId>) -> Result<Vec<Organisation>> {
        let mut tx = treven_mesh::postgres::begin_operator(&self.pool).await?;
        let rows: Vec<OrgRow> = sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM organisations WHERE $1::uuid IS NULL OR id = $1 ORDER BY created_at, id"
        ))
        .bind(only.map(|org| *org.as_uuid()))
        .fetch_all(&mut *tx)
        .traced(trace::postgres("tenants.admin_organisations", "SELECT"))
        .await?;
        tx.commit().await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

impl OrgTx {
    /// Confines the rest of this transaction to `org` (see
    /// [`treven_mesh::postgres::OrgTx::switch_organisation`]); audit
    /// entries and every query after it belong to `org`.
    pub async fn switch_organisation(&mut self, org: OrgId) -> Result<()> {
        self.tx.switch_organisation(org).await?;
        Ok(())
    }

    /// Creates the organisation this transaction is confined to (its id is
    /// the transaction's organisation: row-level security lets nothing else
    /// be inserted). A name taken (case-insensitively) is a conflict on
    /// `name`.
    pub async fn insert_organisation(
        &mut self,
        name: &Name,
        kind: OrgKind,
    ) -> Result<Organisation> {
        let row: OrgRow = sqlx::query_as(&format!(
            "INSERT INTO organisations (id, name, kind) VALUES ($1, $2, $3) RETURNING {ORG_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(name.as_str())
        .bind(kind.as_str())
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("tenants.insert_organisation", "INSERT"))
        .await?;
        row.try_into()
    }

    /// The caller's organisation.
    pub async fn organisation(&mut self) -> Result<Option<Organisation>> {
        let row: Option<OrgRow> = sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM organisations WHERE id = $1"
        ))
        .bind(self.tx.org_id().as_uuid())
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.organisation", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Changes the caller's organisation.
    pub async fn update_organisation(
        &mut self,
        changes: &OrganisationChanges,
    ) -> Result<Option<Organisation>> {
        let row: Option<OrgRow> = sqlx::query_as(&format!(
            "UPDATE organisations SET name = COALESCE($2, name), settings = COALESCE($3, settings), updated_at = now() \
             WHERE id = $1 RETURNING {ORG_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(changes.name.as_ref().map(Name::as_str))
        .bind(changes.settings.as_ref())
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.update_organisation", "UPDATE"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct OrgRow {
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) settings: serde_json::Value,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

impl TryFrom<OrgRow> for Organisation {
    type Error = StoreError;
    fn try_from(row: OrgRow) -> Result<Self> {
        Ok(Organisation {
            id: OrgId::new(row.id),
            name: row.name,
            kind: column("kind", &row.kind)?,
            settings: row.settings,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
