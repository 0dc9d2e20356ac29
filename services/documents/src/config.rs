//! Configuration of the documents service.

use std::net::SocketAddr;
use std::time::Duration;

use treven_mesh::config::{ConfigError, Env, Environment};
use treven_mesh::server::ShutdownPolicy;

/// The port documents listens on.
pub const DEFAULT_PORT: u16 = 50052;

/// Configuration of the documents service.
#[derive(Debug, Clone)]
pub struct DocumentsConfig {
    /// `TREVEN_DOCUMENTS_ADDR`.
    pub listen: SocketAddr,
    /// `TREVEN_DATA_BUCKET` (default `treven-data-{env}`).
    pub bucket: String,
    /// `TREVEN_DOCUMENTS_TABLE` (default `treven-documents-{env}`).
    pub table: String,
    /// `TREVEN_ARTIFACT_MAX_BYTES` (default 50 MB).
    pub max_artifact_bytes: usize,
    /// `TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS` (default 8): artifact
    /// uploads streamed at once; more are refused with RESOURCE_EXHAUSTED.
    /// Each holds at most one multipart part in memory.
    pub max_concurrent_uploads: usize,
    /// `TREVEN_UPLOAD_URL_TTL_SECS` (default 600).
    pub upload_url_ttl: Duration,
    /// `TREVEN_DOWNLOAD_URL_TTL_SECS` (default 300).
    pub download_url_ttl: Duration,
    /// `TREVEN_VERIFY_UPLOAD_BYTES`: also hash the stored bytes on
    /// completion. S3 itself verifies `x-amz-checksum-sha256` on upload in
    /// AWS, so this defaults to on only locally, where the emulator does not.
    pub verify_upload_bytes: bool,
    /// `TREVEN_S3_FORCE_PATH_STYLE` (default: on when `AWS_ENDPOINT_URL` is set).
    pub force_path_style: bool,
    /// `TREVEN_TENANTS_URL` (default `http://127.0.0.1:50051` locally;
    /// required in AWS): the audit log of views, downloads, deletes and
    /// retention erasures.
    pub tenants_url: String,
    /// Drain and grace periods.
    pub shutdown: ShutdownPolicy,
}

impl DocumentsConfig {
    /// Reads and validates the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        // An upload's content type and size cap are the API's contract,
        // declared in documents.proto (and so in the OpenAPI document): a
        // deployment cannot change them behind the clients' backs.
        for retired in ["TREVEN_UPLOAD_CONTENT_TYPES", "TREVEN_UPLOAD_MAX_BYTES"] {
            if env.get(retired).is_some() {
                return Err(env.error(
                    retired,
                    "is no longer read: upload types and sizes are declared in documents.proto",
                ));
            }
        }
        let max_artifact_bytes: usize =
            env.parse_or("TREVEN_ARTIFACT_MAX_BYTES", 50 * 1000 * 1000)?;
        if !(1..=500 * 1000 * 1000).contains(&max_artifact_bytes) {
            return Err(env.error("TREVEN_ARTIFACT_MAX_BYTES", "must be between 1 and 500 MB"));
        }
        let max_concurrent_uploads: usize =
            env.parse_or("TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS", 8)?;
        if !(1..=1024).contains(&max_concurrent_uploads) {
            return Err(env.error(
                "TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS",
                "must be between 1 and 1024",
            ));
        }
        let env_name = environment.as_str();
        Ok(Self {
            listen: env.socket_addr_or(
                "TREVEN_DOCUMENTS_ADDR",
                environment.default_listen(DEFAULT_PORT),
            )?,
            bucket: env
                .get("TREVEN_DATA_BUCKET")
                .unwrap_or_else(|| format!("treven-data-{env_name}")),
            table: env
                .get("TREVEN_DOCUMENTS_TABLE")
                .unwrap_or_else(|| format!("treven-documents-{env_name}")),
            max_artifact_bytes,
            max_concurrent_uploads,
            upload_url_ttl: env.seconds_or("TREVEN_UPLOAD_URL_TTL_SECS", 600, 60..=3600)?,
            download_url_ttl: env.seconds_or("TREVEN_DOWNLOAD_URL_TTL_SECS", 300, 10..=3600)?,
            verify_upload_bytes: env.parse_or(
                "TREVEN_VERIFY_UPLOAD_BYTES",
                environment == Environment::Local,
            )?,
            force_path_style: env.parse_or(
                "TREVEN_S3_FORCE_PATH_STYLE",
                env.get("AWS_ENDPOINT_URL").is_some(),
            )?,
            tenants_url: treven_mesh::client::service_url(
                env,
                "TREVEN_TENANTS_URL",
                "http://127.0.0.1:50051",
            )?,
            shutdown: ShutdownPolicy::from_env(env)?,
        })
    }
}
