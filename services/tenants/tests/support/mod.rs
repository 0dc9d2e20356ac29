//! Shared test harness: a fresh Postgres database per test and the tenants
//! service on port 0, in-process, with the real migrations run as the owner
//! (`treven_tenants::migrate`) and the service logging in as its own login
//! role, so forced row-level security applies to it for real.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use treven_mesh::config::Env;
use treven_mesh::context::attach_context;
use treven_mesh::keys::{MeshKeySource, MeshKeys};
use treven_mesh::{OrgId, Principal, Role};
use treven_proto::treven::tenants::v1 as pb;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use treven_tenants::TenantsConfig;
use treven_tenants::model::{Name, OrgKind};
use treven_tenants::store::PgStore;
use uuid::Uuid;

/// A database that exists for one test.
pub use treven_testkit::TestDatabase as TestDb;

/// A running tenants service and what tests need to call it.
pub struct TestApp {
    pub db: TestDb,
    /// Every principal's key; the service holds only the tenants one.
    pub keys: MeshKeys,
    pub address: std::net::SocketAddr,
    /// The owner's store: the operator's paths (`admin_ensure_*`).
    pub store: PgStore,
    server: treven_testkit::InProcess,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let db = TestDb::create("treven_test").await;
        let all_keys = MeshKeys::generate();
        let [signing, public] = all_keys.only(&[Principal::Tenants]).env();
        let env = Env::from_pairs([
            (
                "TREVEN_TENANTS_DATABASE_URL",
                db.login_url(treven_tenants::LOGIN_ROLE),
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", TestDb::owner_user()),
            (signing.0, signing.1),
            (public.0, public.1),
            ("TREVEN_SHUTDOWN_GRACE_SECS", "2".to_owned()),
            ("TREVEN_DB_ACQUIRE_TIMEOUT_SECS", "2".to_owned()),
        ]);
        let config = TenantsConfig::from_env(&env).expect("config");
        let keys = MeshKeySource::from_env(&env)
            .expect("key")
            .load()
            .await
            .expect("keys");
        let owner = treven_tenants::owner_config(&env).expect("owner");
        treven_tenants::migrate(&owner).await.expect("migrations");
        let store = treven_tenants::owner_store(&owner);
        let server = treven_testkit::InProcess::start(|listener, shutdown| async move {
            treven_tenants::serve(config, &keys, listener, shutdown).await
        })
        .await;
        Self {
            db,
            keys: all_keys,
            address: server.address,
            store,
            server,
        }
    }

    pub async fn client(&self) -> TenantsServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        TenantsServiceClient::new(channel)
    }

    /// Creates an organisation (operator path).
    pub async fn org(&self, name: &str) -> OrgId {
        self.store
            .admin_ensure_org(&Name::parse("name", name).unwrap(), OrgKind::Ngo)
            .await
            .expect("org")
            .id
    }

    /// Creates a user with `sub` and `role` in `org` (operator path) and
    /// returns a token for them.
    pub async fn member(&self, org: OrgId, sub: &str, role: Role) -> String {
        use treven_tenants::model::{CognitoSub, Email};
        let email = Email::parse("email", &format!("{sub}@example.org")).unwrap();
        let name = Name::parse("name", sub).unwrap();
        let cognito = CognitoSub::parse("sub", sub).unwrap();
        self.store
            .admin_ensure_user(org, &email, &name, role, Some(&cognito))
            .await
            .expect("user");
        self.token(org, sub, &[role])
    }

    /// A token for a user at the edge (minted by the gateway).
    pub fn token(&self, org: OrgId, sub: &str, roles: &[Role]) -> String {
        self.token_from(Principal::Gateway, org, sub, roles)
    }

    /// A token minted by `issuer` for tenants, acting for a user.
    pub fn token_from(&self, issuer: Principal, org: OrgId, sub: &str, roles: &[Role]) -> String {
        self.keys.signer(issuer).expect("every key").mint(
            Principal::Tenants,
            org,
            sub,
            roles,
            &Uuid::new_v4().to_string(),
            Duration::from_secs(300),
        )
    }

    /// `token`'s user, as `issuer` would call tenants for them (e.g. the
    /// reports service granting access for an analyst).
    pub fn via(&self, issuer: Principal, token: &str) -> String {
        treven_testkit::policy::reissue(
            &self.keys,
            token,
            Principal::Tenants,
            issuer,
            Principal::Tenants,
        )
    }

    pub async fn stop(self) {
        let _ = self.server.stop(Duration::from_secs(5)).await;
        self.store.pool().close().await;
        self.db.drop().await;
    }
}

/// A request carrying `token`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    attach_context(&mut request, token).expect("ascii token");
    request
}

/// The `google.rpc.BadRequest` fields of a status.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The stable error code of a status.
pub fn code_of(status: &Status) -> &'static str {
    treven_mesh::ErrorCode::of_status(status).as_str()
}

pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

pub fn new_user(email: &str, name: &str, role: pb::Role) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        email: email.into(),
        name: name.into(),
        role: role.into(),
        cognito_sub: String::new(),
    }
}
