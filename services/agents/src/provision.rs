//! Creates the agents table as the CDK app defines it, for local stacks and
//! tests on the emulator. Keys and index come from
//! `deploy/resources/dynamodb-tables.json`, the definition the CDK app reads.

use anyhow::Context as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

/// The shared table definitions.
pub const TABLE_DEFINITIONS: &str = include_str!("../../../deploy/resources/dynamodb-tables.json");

/// Creates the agents table named `table`.
pub async fn create_table(sdk: &aws_config::SdkConfig, table_name: &str) -> anyhow::Result<()> {
    let definitions: serde_json::Value = serde_json::from_str(TABLE_DEFINITIONS)?;
    let table = definitions["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["id"] == "agents"))
        .context("the agents table is defined")?;
    let name = |value: &serde_json::Value| value.as_str().map(str::to_owned).context("a key name");
    let attribute = |name: String| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: String, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let mut request = aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(name(&table["partitionKey"])?)?)
        .attribute_definitions(attribute(name(&table["sortKey"])?)?)
        .key_schema(key(name(&table["partitionKey"])?, KeyType::Hash)?)
        .key_schema(key(name(&table["sortKey"])?, KeyType::Range)?);
    for index in table["globalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        request = request
            .attribute_definitions(attribute(name(&index["partitionKey"])?)?)
            .attribute_definitions(attribute(name(&index["sortKey"])?)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name(&index["indexName"])?)
                    .key_schema(key(name(&index["partitionKey"])?, KeyType::Hash)?)
                    .key_schema(key(name(&index["sortKey"])?, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()?,
            );
    }
    request.send().await.context("create agents table")?;
    Ok(())
}
