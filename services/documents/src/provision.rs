//! Creates the data bucket (versioned) and the documents table as the CDK
//! app defines them, for local stacks and tests on the emulator. The table's
//! keys and index come from `deploy/resources/dynamodb-tables.json`, the
//! definition the CDK app reads too.

use anyhow::Context as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};

use crate::DocumentsConfig;

/// The shared table definitions.
pub const TABLE_DEFINITIONS: &str = include_str!("../../../deploy/resources/dynamodb-tables.json");

/// Creates the bucket (versioned, eu-west-2) and the documents table.
pub async fn create_bucket_and_table(
    sdk: &aws_config::SdkConfig,
    config: &DocumentsConfig,
) -> anyhow::Result<()> {
    let s3 = crate::s3_client(config, sdk);
    s3.create_bucket()
        .bucket(&config.bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::EuWest2)
                .build(),
        )
        .send()
        .await
        .context("create bucket")?;
    s3.put_bucket_versioning()
        .bucket(&config.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .context("enable versioning")?;

    let definitions: serde_json::Value = serde_json::from_str(TABLE_DEFINITIONS)?;
    let table = definitions["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["id"] == "documents"))
        .context("the documents table is defined")?;
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
        .table_name(&config.table)
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
    request.send().await.context("create table")?;
    Ok(())
}
