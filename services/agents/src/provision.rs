//! Creates the agents table as the CDK app defines it, for local stacks and
//! tests on the emulator. Keys and index come from
//! `deploy/resources/dynamodb-tables.json`, the definition the CDK app reads.

/// The shared table definitions.
pub use treven_mesh::aws::TABLE_DEFINITIONS;

/// Creates the agents table named `table_name`.
pub async fn create_table(sdk: &aws_config::SdkConfig, table_name: &str) -> anyhow::Result<()> {
    treven_mesh::aws::create_table(sdk, "agents", table_name).await
}
