//! What every AWS-backed service needs the same way: SDK failures classified
//! for clients (UNAVAILABLE for outages and throttling, INTERNAL otherwise,
//! never SDK text) and DynamoDB tables created as the CDK app defines them
//! (`deploy/resources/dynamodb-tables.json`), for local stacks and tests on
//! the emulator.

use anyhow::Context as _;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

use crate::ServiceError;

/// The shared table definitions, the file the CDK app reads too.
pub const TABLE_DEFINITIONS: &str = include_str!("../../../deploy/resources/dynamodb-tables.json");

/// Error codes AWS services use for throttling and temporary refusals.
const THROTTLING_CODES: [&str; 5] = [
    "Throttling",
    "SlowDown",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "ServiceUnavailable",
];

/// An AWS SDK call failure of `operation` (any service: the SDKs share one
/// `SdkError`): UNAVAILABLE when the dependency is unavailable (network,
/// timeouts, unreadable responses, 5xx, throttling), else INTERNAL. The SDK
/// error is kept as the source, for logs only.
pub fn classify<E, R>(operation: &'static str, error: SdkError<E, R>) -> ServiceError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let unavailable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let raw = format!("{:?}", service.raw());
            raw.contains("status: 5")
                || raw.contains("StatusCode(5")
                || is_throttling(service.err())
        }
        _ => false,
    };
    let source = anyhow::Error::new(error).context(operation);
    if unavailable {
        ServiceError::unavailable(source)
    } else {
        ServiceError::internal(source)
    }
}

/// Whether `error` names one of the [`THROTTLING_CODES`].
fn is_throttling<E: std::error::Error>(error: &E) -> bool {
    let text = error.to_string();
    THROTTLING_CODES.iter().any(|code| text.contains(code))
}

/// Creates the table `id` of [`TABLE_DEFINITIONS`] (`"agents"`,
/// `"documents"`) under `table_name`: on-demand billing, string keys, every
/// global secondary index projecting all attributes.
pub async fn create_table(
    sdk: &aws_config::SdkConfig,
    id: &str,
    table_name: &str,
) -> anyhow::Result<()> {
    let definitions: serde_json::Value = serde_json::from_str(TABLE_DEFINITIONS)?;
    let table = definitions["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["id"] == id))
        .with_context(|| format!("the {id} table is defined"))?;
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
    request
        .send()
        .await
        .with_context(|| format!("create {id} table"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn outages_are_unavailable_and_the_rest_internal() {
        let timeout: SdkError<std::io::Error, ()> = SdkError::timeout_error("slow");
        assert_eq!(classify("get", timeout).code(), ErrorCode::Unavailable);
        let construction: SdkError<std::io::Error, ()> = SdkError::construction_failure("bad");
        assert_eq!(classify("get", construction).code(), ErrorCode::Internal);
    }

    #[test]
    fn every_table_in_the_definitions_has_keys() {
        let definitions: serde_json::Value =
            serde_json::from_str(TABLE_DEFINITIONS).expect("valid JSON");
        for id in ["agents", "documents"] {
            let table = definitions["tables"]
                .as_array()
                .and_then(|tables| tables.iter().find(|t| t["id"] == id))
                .expect("defined");
            assert!(table["partitionKey"].is_string() && table["sortKey"].is_string());
        }
    }
}
