//! The documents service: the only owner of the `treven-data-{env}` bucket
//! and the documents table. Uploads and downloads go straight to S3 through
//! presigned URLs limited to one key in the caller's organisation prefix;
//! sources carry a trust score; evidence packs and report artifacts are
//! stored here for the reports service.
//!
//! Layers: [`api`] (wire: handlers and proto ⇄ domain conversions) →
//! [`app`] (rules, one file per use case group) → [`store`] (`meta` on
//! DynamoDB, `blobs` on S3); [`model`] and [`sources`] hold validated domain
//! types. Only this file imports [`api`].

pub mod api;
pub mod app;
pub mod aws;
pub mod config;
pub mod model;
pub mod policy;
pub mod provision;
pub mod sources;
pub mod store;

use anyhow::Context as _;
use aws_sdk_s3::config::RequestChecksumCalculation;
use tokio::net::TcpListener;
use tonic::service::Routes;
use treven_mesh::CancellationToken;
use treven_mesh::client::ChannelOptions;
use treven_mesh::discovery::upstream;
use treven_mesh::keys::MeshKeys;
use treven_mesh::pagination::CursorCodec;
use treven_mesh::server::GrpcService;
use treven_mesh::{Principal, Signer};
use treven_proto::treven::documents::v1::documents_service_server::DocumentsServiceServer;

pub use config::DocumentsConfig;

/// The full gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "treven.documents.v1.DocumentsService";
/// Largest single request message (artifact chunks included).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// An S3 client for the data bucket.
pub fn s3_client(config: &DocumentsConfig, sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(config.force_path_style)
        // Checksums are ours to declare (SHA-256); without this the SDK adds
        // a CRC32 of the empty body to presigned PUTs, which then fail.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// The service over the given S3 and DynamoDB clients.
pub fn build_with(
    config: DocumentsConfig,
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    keys: &MeshKeys,
) -> anyhow::Result<app::Documents> {
    let signer = keys.require_signer(Principal::Documents)?;
    let blobs = store::blobs::BlobStore::new(s3, config.bucket.clone());
    let meta = store::meta::MetaStore::new(dynamodb, config.table.clone());
    Ok(app::Documents::new(
        config,
        meta,
        blobs,
        CursorCodec::new(signer.key(), "documents"),
    ))
}

/// The service wired over AWS clients built from `sdk`.
pub fn build(
    config: DocumentsConfig,
    sdk: &aws_config::SdkConfig,
    keys: &MeshKeys,
) -> anyhow::Result<app::Documents> {
    let s3 = s3_client(&config, sdk);
    build_with(config, s3, aws_sdk_dynamodb::Client::new(sdk), keys)
}

/// The audit log in the tenants service at `config.tenants_url`, recorded
/// with tokens minted by `signer`.
pub fn audit_log(config: &DocumentsConfig, signer: Signer) -> anyhow::Result<app::AuditLog> {
    // Short: a view or download waits for its entry, so a hung tenants
    // must not hold it for long (each attempt is bounded; see
    // `app::audit::RECORD_ATTEMPTS`).
    let options = ChannelOptions {
        connect_timeout: std::time::Duration::from_secs(3),
        call_timeout: std::time::Duration::from_secs(3),
    };
    let channel = upstream("TREVEN_TENANTS_URL", &config.tenants_url, options)
        .context("TREVEN_TENANTS_URL")?;
    Ok(app::AuditLog::new(channel, signer))
}

/// The service as the retention job (`treven admin retention`) drives it:
/// AWS clients from `sdk`, and the audit log recorded with the operator's
/// tokens (`signer`), since the job acts as the operator.
pub fn build_for_retention(
    config: DocumentsConfig,
    sdk: &aws_config::SdkConfig,
    signer: Signer,
) -> anyhow::Result<app::Documents> {
    let audit = audit_log(&config, signer.clone())?;
    let s3 = s3_client(&config, sdk);
    let blobs = store::blobs::BlobStore::new(s3, config.bucket.clone());
    let meta =
        store::meta::MetaStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone());
    let cursors = CursorCodec::new(signer.key(), "documents");
    Ok(app::Documents::new(config, meta, blobs, cursors).with_audit_log(audit))
}

/// The documents gRPC routes, behind the access table
/// ([`policy::POLICY`]).
pub fn routes(documents: app::Documents, keys: &MeshKeys) -> Routes {
    let server = DocumentsServiceServer::new(api::DocumentsGrpc::new(documents))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    Routes::new(policy::POLICY.guard(server, keys.verifier(Principal::Documents)))
}

/// Serves documents on `listener` until `shutdown`, with AWS clients from
/// `sdk` (the standard AWS environment: region, credentials, endpoint).
pub async fn serve(
    config: DocumentsConfig,
    sdk: &aws_config::SdkConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let policy = config.shutdown;
    let audit = audit_log(&config, keys.require_signer(Principal::Documents)?)?;
    let documents = build(config, sdk, keys)?.with_audit_log(audit);
    let service = GrpcService {
        name: "documents",
        routes: routes(documents, keys),
        health_names: vec![SERVICE_NAME],
    };
    treven_mesh::server::serve(service, listener, shutdown, policy).await
}
