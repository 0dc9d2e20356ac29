//! Token metering: each model call's tokens and cost added to the
//! organisation's month, and the month read back.

use chrono::{NaiveDate, Utc};
use treven_mesh::{MeshContext, ServiceError};

use super::{Agents, month_of};
use crate::model::ModelUsage;
use crate::provider::Usage;

/// Tokens and cost of a month.
#[derive(Debug, Clone)]
pub struct MonthUsage {
    /// `YYYY-MM`.
    pub month: String,
    /// Totals.
    pub total: Usage,
    /// Total cost, nano-dollars.
    pub total_cost_nanos: i64,
    /// Per model, most expensive first.
    pub models: Vec<ModelUsage>,
}

impl Agents {
    /// The caller's organisation's tokens in `month` (`YYYY-MM`, default
    /// the current month).
    pub async fn usage(&self, ctx: &MeshContext, month: &str) -> Result<MonthUsage, ServiceError> {
        let month = if month.is_empty() {
            month_of(Utc::now())
        } else {
            NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
                .ok()
                .filter(|_| month.len() == 7)
                .ok_or_else(|| ServiceError::invalid_field("month", "must be YYYY-MM"))?;
            month.to_owned()
        };
        let models = self.inner.store.usage(ctx.org_id(), &month).await?;
        let mut total = Usage::default();
        let mut total_cost_nanos = 0;
        for model in &models {
            total.add(model.usage);
            total_cost_nanos += model.cost_nanos;
        }
        Ok(MonthUsage {
            month,
            total,
            total_cost_nanos,
            models,
        })
    }
}
