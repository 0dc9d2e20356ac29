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
        Self::spawn_with(None).await
    }

    /// The service inviting users into `cognito`'s pool, through its link.
    pub async fn spawn_with_cognito(cognito: &TestCognito) -> Self {
        Self::spawn_with(Some(cognito)).await
    }

    async fn spawn_with(cognito: Option<&TestCognito>) -> Self {
        let db = TestDb::create("treven_test").await;
        let all_keys = MeshKeys::generate();
        let [signing, public] = all_keys.only(&[Principal::Tenants]).env();
        let mut pairs = vec![
            (
                "TREVEN_TENANTS_DATABASE_URL",
                db.login_url(treven_tenants::LOGIN_ROLE),
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", TestDb::owner_user()),
            (signing.0, signing.1),
            (public.0, public.1),
            ("TREVEN_SHUTDOWN_GRACE_SECS", "2".to_owned()),
            ("TREVEN_DB_ACQUIRE_TIMEOUT_SECS", "2".to_owned()),
        ];
        if let Some(cognito) = cognito {
            pairs.push(("TREVEN_COGNITO_USER_POOL_ID", cognito.pool_id.clone()));
            pairs.push(("TREVEN_COGNITO_SYNC_MAX_BACKOFF_MILLIS", "1000".to_owned()));
        }
        let env = Env::from_pairs(pairs);
        let config = TenantsConfig::from_env(&env).expect("config");
        let keys = MeshKeySource::from_env(&env)
            .expect("key")
            .load()
            .await
            .expect("keys");
        let owner = treven_tenants::owner_config(&env).expect("owner");
        treven_tenants::migrate(&owner).await.expect("migrations");
        let store = treven_tenants::owner_store(&owner);
        let sdk = match cognito {
            Some(cognito) => Some(cognito.service_sdk().await),
            None => None,
        };
        let server = treven_testkit::InProcess::start(|listener, shutdown| async move {
            treven_tenants::serve_with_sdk(config, &keys, sdk.as_ref(), listener, shutdown).await
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

/// moto's Cognito with a user pool shaped like the CDK app's (sign-in by
/// e-mail, the immutable `custom:orgId`, the three role groups), and a link
/// the service reaches it through, which a test can cut.
pub struct TestCognito {
    pub moto: treven_testkit::Moto,
    pub pool_id: String,
    /// Straight to moto: what the test reads and sets itself.
    pub client: aws_sdk_cognitoidentityprovider::Client,
    /// The service's way to moto.
    pub link: Link,
    stop: treven_mesh::CancellationToken,
}

impl TestCognito {
    pub async fn start() -> Self {
        use aws_sdk_cognitoidentityprovider::types::{
            AttributeDataType, SchemaAttributeType, UsernameAttributeType,
        };
        let moto = treven_testkit::Moto::start();
        let client = aws_sdk_cognitoidentityprovider::Client::new(&moto.sdk().await);
        let pool_id = client
            .create_user_pool()
            .pool_name("treven-test")
            .username_attributes(UsernameAttributeType::Email)
            .schema(
                SchemaAttributeType::builder()
                    .name("orgId")
                    .attribute_data_type(AttributeDataType::String)
                    .mutable(false)
                    .build(),
            )
            .send()
            .await
            .expect("user pool")
            .user_pool()
            .and_then(|p| p.id())
            .expect("pool id")
            .to_owned();
        for group in ["admin", "analyst", "viewer"] {
            client
                .create_group()
                .user_pool_id(&pool_id)
                .group_name(group)
                .send()
                .await
                .expect("group");
        }
        let stop = treven_mesh::CancellationToken::new();
        let port: u16 = moto
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("moto port");
        let link = Link::start(([127, 0, 0, 1], port).into(), stop.clone()).await;
        Self {
            moto,
            pool_id,
            client,
            link,
            stop,
        }
    }

    /// The SDK settings the service gets: through the link.
    pub async fn service_sdk(&self) -> aws_config::SdkConfig {
        treven_testkit::sdk_for(&format!("http://{}", self.link.address), "test", "test").await
    }

    /// The attributes of the Cognito user `username`, `None` when absent.
    pub async fn attributes(
        &self,
        username: &str,
    ) -> Option<(bool, std::collections::HashMap<String, String>)> {
        match self
            .client
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(user) => Some((
                user.enabled(),
                user.user_attributes()
                    .iter()
                    .map(|a| {
                        (
                            a.name().to_owned(),
                            a.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
            )),
            Err(error) => {
                assert!(
                    error
                        .as_service_error()
                        .is_some_and(|e| e.is_user_not_found_exception()),
                    "AdminGetUser: {error:?}"
                );
                None
            }
        }
    }

    /// The groups of the Cognito user `username`.
    pub async fn groups(&self, username: &str) -> Vec<String> {
        let mut groups: Vec<String> = self
            .client
            .admin_list_groups_for_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
            .expect("groups")
            .groups()
            .iter()
            .filter_map(|g| g.group_name().map(str::to_owned))
            .collect();
        groups.sort();
        groups
    }

    /// How many Cognito users have `email`.
    pub async fn users_with_email(&self, email: &str) -> usize {
        self.client
            .list_users()
            .user_pool_id(&self.pool_id)
            .filter(format!("email = \"{email}\""))
            .send()
            .await
            .expect("list users")
            .users()
            .len()
    }
}

impl Drop for TestCognito {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A TCP link to a server that a test can cut (every open connection
/// dropped, new ones accepted and closed at once, as when the server or the
/// network is down) and restore.
pub struct Link {
    /// Where to connect instead of the server.
    pub address: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Link {
    /// A link to `target`, up, until `shutdown`.
    pub async fn start(
        target: std::net::SocketAddr,
        shutdown: treven_mesh::CancellationToken,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, watch) = tokio::sync::watch::channel(0u64);
        let accepting = up.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = watch.clone();
                cut.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { address, up, cuts }
    }

    /// Drops every connection and refuses new ones until [`Link::restore`].
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
