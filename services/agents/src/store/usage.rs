//! Token usage per organisation, month and model: counters added
//! atomically.

use treven_mesh::OrgId;
use treven_mesh::aws::classify;
use treven_mesh::trace::{self, Traced as _};

use super::{Item, Result, Store, n, number, pk, s};
use crate::model::ModelUsage;
use crate::provider::Usage;

impl Store {
    /// Adds one model call's tokens and cost to `org`'s month.
    pub async fn add_usage(
        &self,
        org: OrgId,
        month: &str,
        model_id: &str,
        usage: Usage,
        cost_nanos: i64,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(pk(org)))
            .key("SK", s(format!("USAGE#{month}#{model_id}")))
            .update_expression(
                "SET kind = :k, model_id = :m ADD input_tokens :i, output_tokens :o, cache_read_tokens :r, cache_write_tokens :w, cost_nanos :c, calls :one",
            )
            .expression_attribute_values(":k", s("usage"))
            .expression_attribute_values(":m", s(model_id))
            .expression_attribute_values(":i", n(usage.input_tokens))
            .expression_attribute_values(":o", n(usage.output_tokens))
            .expression_attribute_values(":r", n(usage.cache_read_tokens))
            .expression_attribute_values(":w", n(usage.cache_write_tokens))
            .expression_attribute_values(":c", n(cost_nanos))
            .expression_attribute_values(":one", n(1))
            .send()
            .traced(trace::with_org(trace::dynamodb("UpdateItem", &self.table), org))
            .await
            .map_err(|e| classify("add usage", e))?;
        Ok(())
    }

    /// `org`'s usage in `month` (`YYYY-MM`), per model.
    pub async fn usage(&self, org: OrgId, month: &str) -> Result<Vec<ModelUsage>> {
        let mut rows = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :p AND begins_with(SK, :u)")
                .expression_attribute_values(":p", s(pk(org)))
                .expression_attribute_values(":u", s(format!("USAGE#{month}#")))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
                .await
                .map_err(|e| classify("query usage", e))?;
            for item in output.items.unwrap_or_default() {
                rows.push(ModelUsage {
                    model_id: item
                        .get("model_id")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                    usage: Usage {
                        input_tokens: number(&item, "input_tokens"),
                        output_tokens: number(&item, "output_tokens"),
                        cache_read_tokens: number(&item, "cache_read_tokens"),
                        cache_write_tokens: number(&item, "cache_write_tokens"),
                    },
                    cost_nanos: number(&item, "cost_nanos"),
                    calls: number(&item, "calls"),
                });
            }
            match output.last_evaluated_key {
                Some(key) if rows.len() < 1_000 => start = Some(key),
                _ => break,
            }
        }
        rows.sort_by(|a, b| {
            b.cost_nanos
                .cmp(&a.cost_nanos)
                .then(a.model_id.cmp(&b.model_id))
        });
        Ok(rows)
    }
}
