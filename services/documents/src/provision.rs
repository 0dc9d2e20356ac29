//! Creates the data bucket (versioned) and the documents table as the CDK
//! app defines them, for local stacks and tests on the emulator. The table's
//! keys and index come from `deploy/resources/dynamodb-tables.json`, the
//! definition the CDK app reads too.

use anyhow::Context as _;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};

use crate::DocumentsConfig;

/// The shared table definitions.
pub use treven_mesh::aws::TABLE_DEFINITIONS;

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
    treven_mesh::aws::create_table(sdk, "documents", &config.table).await
}
