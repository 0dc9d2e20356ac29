//! The `partners` table: the organisations a report may be shared with.

use chrono::{DateTime, Utc};
use treven_mesh::OrgId;
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use super::{OrgTx, Result, StoreError, column};
use crate::model::{Email, Name, OrgKind, Partner};

const PARTNER_COLUMNS: &str = "id, org_id, name, kind, contact_email, created_at";

impl OrgTx {
    /// One partner.
    pub async fn partner(&mut self, id: Uuid) -> Result<Option<Partner>> {
        let row: Option<PartnerRow> = sqlx::query_as(&format!(
            "SELECT {PARTNER_COLUMNS} FROM partners WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.partner", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Up to `limit` partners after `after` (name, id).
    pub async fn partners(
        &mut self,
        after: Option<&(String, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Partner>> {
        let rows: Vec<PartnerRow> = sqlx::query_as(&format!(
            "SELECT {PARTNER_COLUMNS} FROM partners WHERE org_id = $1 \
               AND ($2::text IS NULL OR (name, id) > ($2, $3)) ORDER BY name, id LIMIT $4"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(after.map(|(name, _)| name.as_str()))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("tenants.partners", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Adds a partner.
    pub async fn insert_partner(
        &mut self,
        name: &Name,
        kind: OrgKind,
        contact: &Email,
    ) -> Result<Partner> {
        let row: PartnerRow = sqlx::query_as(&format!(
            "INSERT INTO partners (id, org_id, name, kind, contact_email) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {PARTNER_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(self.tx.org_id().as_uuid())
        .bind(name.as_str())
        .bind(kind.as_str())
        .bind(contact.as_str())
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("tenants.insert_partner", "INSERT"))
        .await?;
        row.try_into()
    }

    /// Removes a partner (and, by cascade, its grants); whether there was one.
    pub async fn delete_partner(&mut self, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM partners WHERE org_id = $1 AND id = $2")
            .bind(self.tx.org_id().as_uuid())
            .bind(id)
            .execute(&mut *self.tx)
            .traced(trace::postgres("tenants.delete_partner", "DELETE"))
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[derive(sqlx::FromRow)]
struct PartnerRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    kind: String,
    contact_email: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<PartnerRow> for Partner {
    type Error = StoreError;
    fn try_from(row: PartnerRow) -> Result<Self> {
        Ok(Partner {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            name: row.name,
            kind: column("kind", &row.kind)?,
            contact_email: row.contact_email,
            created_at: row.created_at,
        })
    }
}
