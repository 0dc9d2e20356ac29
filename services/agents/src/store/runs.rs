//! Agent runs.

use treven_mesh::OrgId;
use treven_mesh::aws::classify;
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use super::{Result, Store, body, parse, pk, s};
use crate::model::Run;

impl Store {
    /// Stores or replaces a run.
    pub async fn put_run(&self, run: &Run) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(pk(run.org_id)))
            .item("SK", s(format!("RUN#{}", run.id)))
            .item("kind", s("run"))
            .item("body", body(run)?)
            .send()
            .traced(trace::dynamodb("PutItem", &self.table))
            .await
            .map_err(|e| classify("put run", e))?;
        Ok(())
    }

    /// One run of `org`.
    pub async fn run(&self, org: OrgId, id: Uuid) -> Result<Option<Run>> {
        self.get(org, format!("RUN#{id}"))
            .await?
            .map(|item| parse(&item))
            .transpose()
    }
}
