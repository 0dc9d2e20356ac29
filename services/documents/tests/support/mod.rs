//! Test harness: the moto AWS emulator with signature checking on, a
//! versioned bucket and the documents table (from
//! `deploy/resources/dynamodb-tables.json`), and the documents service on
//! port 0, in-process.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use treven_documents::DocumentsConfig;
use treven_mesh::config::Env;
use treven_mesh::context::attach_context;
use treven_mesh::keys::{MeshKeySource, MeshKeys};
use treven_mesh::{CancellationToken, MeshKey, OrgId, Principal, Role};
use treven_proto::treven::documents::v1 as pb;
use treven_proto::treven::documents::v1::documents_service_client::DocumentsServiceClient;

pub const BUCKET: &str = "treven-data-test";
pub const TABLE: &str = "treven-documents-test";

pub use treven_testkit::{Moto, S3S_ACCESS_KEY, S3S_SECRET_KEY, sdk_for};

/// s3s-fs with the test bucket.
pub struct S3sFs(treven_testkit::S3sFs);

impl S3sFs {
    pub fn start() -> Self {
        Self(treven_testkit::S3sFs::start(&[BUCKET]))
    }

    pub fn endpoint(&self) -> &str {
        &self.0.endpoint
    }
}

/// Creates the versioned bucket and the table.
pub async fn provision(sdk: &aws_config::SdkConfig, config: &DocumentsConfig) {
    treven_documents::provision::create_bucket_and_table(sdk, config)
        .await
        .expect("bucket and table");
}

pub fn test_config() -> DocumentsConfig {
    test_config_with(&[])
}

/// [`test_config`] with some variables set otherwise.
pub fn test_config_with(overrides: &[(&str, &str)]) -> DocumentsConfig {
    let mut pairs = vec![
        ("TREVEN_DATA_BUCKET", BUCKET),
        ("TREVEN_DOCUMENTS_TABLE", TABLE),
        ("TREVEN_S3_FORCE_PATH_STYLE", "true"),
        ("TREVEN_ARTIFACT_MAX_BYTES", "200000"),
        ("TREVEN_SHUTDOWN_GRACE_SECS", "2"),
    ];
    pairs.retain(|(name, _)| !overrides.iter().any(|(o, _)| o == name));
    pairs.extend_from_slice(overrides);
    DocumentsConfig::from_env(&Env::from_pairs(pairs)).expect("config")
}

/// The documents service running against moto.
pub struct TestApp {
    pub moto: Moto,
    pub sdk: aws_config::SdkConfig,
    /// Every principal's key; the service holds only the documents one.
    pub keys: MeshKeys,
    pub address: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// [`TestApp::spawn`] with some variables set otherwise (see
    /// [`test_config_with`]).
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let moto = Moto::start();
        let sdk = moto.sdk().await;
        let config = test_config_with(overrides);
        provision(&sdk, &config).await;
        let keys = MeshKeys::generate();
        let service_keys =
            MeshKeySource::from_env(&Env::from_pairs(keys.only(&[Principal::Documents]).env()))
                .unwrap()
                .load()
                .await
                .unwrap();
        let documents = treven_documents::build(config, &sdk, &service_keys).unwrap();
        let (address, shutdown) = serve(documents, &service_keys).await;
        Self {
            moto,
            sdk,
            keys,
            address,
            shutdown,
        }
    }

    pub async fn client(&self) -> DocumentsServiceClient<Channel> {
        client(self.address).await
    }

    /// A token for `user-1` of `org` at the edge (minted by the gateway).
    pub fn token(&self, org: OrgId, role: Role) -> String {
        self.token_from(Principal::Gateway, org, role)
    }

    /// A token minted by `issuer` for documents, acting for `user-1`.
    pub fn token_from(&self, issuer: Principal, org: OrgId, role: Role) -> String {
        mint(&self.keys, issuer, org, role)
    }

    /// `token`'s user, as `issuer` would call documents for them (e.g. the
    /// reports service storing an artifact for an analyst).
    pub fn via(&self, issuer: Principal, token: &str) -> String {
        via(&self.keys, issuer, token)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        treven_documents::s3_client(&test_config(), &self.sdk)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves `documents` on a free port; returns its address and stop token.
pub async fn serve(
    documents: treven_documents::app::Documents,
    keys: &MeshKeys,
) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let service = treven_mesh::server::GrpcService {
        name: "documents",
        routes: treven_documents::routes(documents, keys),
        health_names: vec![treven_documents::SERVICE_NAME],
    };
    let policy = test_config().shutdown;
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move { treven_mesh::server::serve(service, listener, shutdown, policy).await }
    });
    (address, shutdown)
}

pub async fn client(address: std::net::SocketAddr) -> DocumentsServiceClient<Channel> {
    for _ in 0..50 {
        if let Ok(channel) = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            return DocumentsServiceClient::new(channel)
                .max_decoding_message_size(16 * 1024 * 1024);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("documents did not start");
}

/// A token minted by `issuer` for documents, acting for `user-1` of `org`.
pub fn mint(keys: &MeshKeys, issuer: Principal, org: OrgId, role: Role) -> String {
    keys.signer(issuer).expect("every key").mint(
        Principal::Documents,
        org,
        "user-1",
        &[role],
        "req",
        Duration::from_secs(300),
    )
}

/// `token`'s user, as `issuer` would call documents for them.
pub fn via(keys: &MeshKeys, issuer: Principal, token: &str) -> String {
    treven_testkit::policy::reissue(
        keys,
        token,
        Principal::Documents,
        issuer,
        Principal::Documents,
    )
}

pub fn org() -> OrgId {
    OrgId::new(uuid::Uuid::now_v7())
}

pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    attach_context(&mut request, token).unwrap();
    request
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    treven_documents::model::Sha256Hex::of(bytes)
        .as_str()
        .to_owned()
}

pub fn upload_request(name: &str, content_type: &str, bytes: &[u8]) -> pb::CreateUploadRequest {
    pb::CreateUploadRequest {
        file_name: name.into(),
        content_type: content_type.into(),
        size_bytes: bytes.len() as i64,
        sha256: sha256_hex(bytes),
    }
}

/// PUTs `body` to a presigned URL with curl; returns the HTTP status.
pub fn curl_put(url: &str, headers: &[(String, String)], body: &[u8]) -> u16 {
    let dir = std::env::temp_dir().join(format!("treven-upload-{}", uuid::Uuid::new_v4()));
    std::fs::write(&dir, body).unwrap();
    let mut command = Command::new("curl");
    let response = std::env::temp_dir().join(format!("treven-response-{}", uuid::Uuid::new_v4()));
    command
        .args(["-s", "-o"])
        .arg(&response)
        .args(["-w", "%{http_code}", "-X", "PUT", "--data-binary"])
        .arg(format!("@{}", dir.display()));
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let out = command.arg(url).output().expect("curl runs");
    let _ = std::fs::remove_file(&dir);
    let status: u16 = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    if status != 200 {
        // Shown only when a test fails: what the emulator said.
        eprintln!(
            "PUT {url} -> {status}: {}",
            std::fs::read_to_string(&response).unwrap_or_default()
        );
    }
    let _ = std::fs::remove_file(&response);
    status
}

/// GETs a URL with curl: status, headers, body.
pub fn curl_get(url: &str) -> (u16, String, Vec<u8>) {
    let headers = std::env::temp_dir().join(format!("treven-headers-{}", uuid::Uuid::new_v4()));
    let out = Command::new("curl")
        .args(["-s", "-D"])
        .arg(&headers)
        .arg(url)
        .output()
        .expect("curl runs");
    let head = std::fs::read_to_string(&headers).unwrap_or_default();
    let _ = std::fs::remove_file(&headers);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, out.stdout)
}

pub fn headers_of(response: &pb::CreateUploadResponse) -> Vec<(String, String)> {
    response
        .upload_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

/// Registers a text file and PUTs `bytes` to its presigned URL with curl:
/// the document, still pending.
pub async fn put_file(
    client: &mut DocumentsServiceClient<Channel>,
    token: &str,
    name: &str,
    bytes: &[u8],
) -> pb::Document {
    let upload = client
        .create_upload(authed(token, upload_request(name, "text/plain", bytes)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        curl_put(&upload.upload_url, &headers_of(&upload), bytes),
        200
    );
    upload.document.unwrap()
}

/// [`put_file`], then completes it: the document as completion left it.
pub async fn upload_file(
    client: &mut DocumentsServiceClient<Channel>,
    token: &str,
    name: &str,
    bytes: &[u8],
) -> pb::Document {
    let id = put_file(client, token, name, bytes).await.id;
    let request = pb::CompleteUploadRequest { id };
    client
        .complete_upload(authed(token, request))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap()
}

/// The documents service with its audit log: the real tenants service on a
/// fresh Postgres database (organisations must exist there), moto for S3
/// and DynamoDB.
pub struct Audited {
    pub moto: Moto,
    pub sdk: aws_config::SdkConfig,
    pub config: DocumentsConfig,
    /// Every principal's key.
    pub keys: MeshKeys,
    pub address: std::net::SocketAddr,
    pub tenants_address: std::net::SocketAddr,
    /// The tenants owner's store (operator paths).
    pub tenants_store: treven_tenants::store::PgStore,
    db: Option<treven_testkit::TestDatabase>,
    tenants_shutdown: CancellationToken,
    shutdown: CancellationToken,
}

impl Audited {
    pub async fn spawn() -> Self {
        let moto = Moto::start();
        let sdk = moto.sdk().await;
        let config = test_config();
        provision(&sdk, &config).await;
        let keys = MeshKeys::generate();

        let db = treven_testkit::TestDatabase::create("treven_documents_test").await;
        let tenants_config = treven_tenants::TenantsConfig::from_env(&Env::from_pairs([(
            "TREVEN_TENANTS_DATABASE_URL",
            db.url.clone(),
        )]))
        .unwrap();
        let tenants_store = treven_tenants::store::PgStore::connect_lazy(
            tenants_config.database.clone(),
            &tenants_config.pool,
        );
        tenants_store.migrate().await.expect("tenants migrations");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tenants_address = listener.local_addr().unwrap();
        let tenants_shutdown = CancellationToken::new();
        let service = treven_mesh::server::GrpcService {
            name: "tenants",
            routes: treven_tenants::routes(tenants_store.clone(), &keys).unwrap(),
            health_names: vec!["treven.tenants.v1.TenantsService"],
        };
        let policy = test_config().shutdown;
        tokio::spawn({
            let shutdown = tenants_shutdown.clone();
            async move { treven_mesh::server::serve(service, listener, shutdown, policy).await }
        });

        let audit = treven_documents::app::AuditLog::new(
            tenants_channel(tenants_address),
            keys.require_signer(Principal::Documents).unwrap(),
        );
        let documents = treven_documents::build(config.clone(), &sdk, &keys)
            .unwrap()
            .with_audit_log(audit);
        let (address, shutdown) = serve(documents, &keys).await;
        Self {
            moto,
            sdk,
            config,
            keys,
            address,
            tenants_address,
            tenants_store,
            db: Some(db),
            tenants_shutdown,
            shutdown,
        }
    }

    pub async fn client(&self) -> DocumentsServiceClient<Channel> {
        client(self.address).await
    }

    /// A new organisation, in tenants.
    pub async fn org(&self) -> OrgId {
        use treven_tenants::model::{Name, OrgKind};
        self.tenants_store
            .admin_ensure_org(
                &Name::parse("name", &format!("documents test {}", uuid::Uuid::new_v4())).unwrap(),
                OrgKind::Ngo,
            )
            .await
            .unwrap()
            .id
    }

    /// A token for `user-1` of `org` at the edge, for documents.
    pub fn token(&self, org: OrgId, role: Role) -> String {
        mint(&self.keys, Principal::Gateway, org, role)
    }

    /// The audit entries on `resource_type/resource_id` of `org`, newest
    /// first, as an admin reads them at the edge.
    pub async fn audit(
        &self,
        org: OrgId,
        resource_type: &str,
        resource_id: &str,
    ) -> Vec<treven_proto::treven::tenants::v1::AuditEvent> {
        use treven_proto::treven::tenants::v1 as tenants;
        use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
        let token = self.keys.signer(Principal::Gateway).unwrap().mint(
            Principal::Tenants,
            org,
            "auditor",
            &[Role::Admin],
            "req",
            Duration::from_secs(300),
        );
        TenantsServiceClient::new(tenants_channel(self.tenants_address))
            .list_audit_events(authed(
                &token,
                tenants::ListAuditEventsRequest {
                    limit: 100,
                    resource_type: resource_type.into(),
                    resource_id: resource_id.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .items
    }

    /// The service as the retention job drives it: the operator records
    /// the audit entries.
    pub fn retention(&self) -> treven_documents::app::Documents {
        let audit = treven_documents::app::AuditLog::new(
            tenants_channel(self.tenants_address),
            self.keys.require_signer(Principal::Operator).unwrap(),
        );
        treven_documents::build(self.config.clone(), &self.sdk, &self.keys)
            .unwrap()
            .with_audit_log(audit)
    }

    /// The retention job's context in `org`.
    pub fn operator(&self, org: OrgId) -> treven_mesh::MeshContext {
        self.keys.signer(Principal::Operator).unwrap().acting_for(
            org,
            "treven-retention",
            &[Role::Admin],
            "retention-test",
        )
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        treven_documents::s3_client(&self.config, &self.sdk)
    }

    /// Stops the tenants service (the audit log becomes unreachable).
    pub fn stop_tenants(&self) {
        self.tenants_shutdown.cancel();
    }
}

impl Audited {
    /// Stops both services and drops the tenants database.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tenants_shutdown.cancel();
        self.tenants_store.pool().close().await;
        if let Some(db) = self.db.take() {
            db.drop().await;
        }
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tenants_shutdown.cancel();
    }
}

/// A lazy channel to tenants at `address`.
pub fn tenants_channel(address: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}
