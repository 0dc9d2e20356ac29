//! Test harness: moto (DynamoDB, S3) with the agents and documents tables,
//! the documents service and the agents service on port 0, in-process, and
//! model providers chosen per test (offline, or the real Bedrock SDK
//! pointed at the Bedrock fake, or Gemini pointed at the Gemini fake).
//! [`TestApp::spawn_with_tenants`] adds the real tenants service on a fresh
//! Postgres database as the audit log of admins' oversight reads.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use treven_agents::AgentsConfig;
use treven_agents::clients::ReportsLookup;
use treven_agents::config::{BreakerConfig, GeminiConfig, GeminiCredential};
use treven_agents::provider::Provider;
use treven_agents::provider::bedrock::BedrockProvider;
use treven_agents::provider::gemini::GeminiProvider;
use treven_agents::provider::offline::OfflineProvider;
use treven_agents::provider::router::Router;
use treven_mesh::config::Env;
use treven_mesh::context::attach_context;
use treven_mesh::events::EventPublisher;
use treven_mesh::keys::MeshKeys;
use treven_mesh::{CancellationToken, MeshContext, OrgId, Principal, Role, ServiceError};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::documents::v1 as docs;
use treven_proto::treven::documents::v1::documents_service_client::DocumentsServiceClient;
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use treven_testkit::bedrock::BedrockFake;
use treven_testkit::fault::FaultProxy;
use treven_testkit::gemini::GeminiFake;
use treven_testkit::{Moto, TestDatabase};
use uuid::Uuid;

pub const TABLE: &str = "treven-agents-test";
pub const DOCS_TABLE: &str = "treven-documents-test";
pub const BUCKET: &str = "treven-data-test";
pub const OPUS: &str = "eu.anthropic.claude-opus-4-5-20251101-v1:0";

/// Which models a test app uses.
pub enum Models {
    /// The offline provider only.
    Offline,
    /// Bedrock (real SDK, one attempt per call) against the fake, then
    /// Gemini against its fake.
    Fakes,
}

/// Reports as the social agent sees them: approved ids listed here.
#[derive(Clone, Default)]
pub struct FakeReports {
    pub approved: Vec<(OrgId, Uuid)>,
    pub drafts: Vec<(OrgId, Uuid)>,
}

impl ReportsLookup for FakeReports {
    fn approved_judgements(
        &self,
        context: &MeshContext,
        id: Uuid,
    ) -> BoxFuture<'static, Result<(bool, Vec<String>), ServiceError>> {
        let org = context.org_id();
        let approved = self.approved.contains(&(org, id));
        let draft = self.drafts.contains(&(org, id));
        async move {
            if approved {
                Ok((
                    true,
                    vec![
                        "We assess that labour exploitation in agriculture persisted [c1]."
                            .to_owned(),
                    ],
                ))
            } else if draft {
                Ok((false, Vec::new()))
            } else {
                Err(ServiceError::not_found("report"))
            }
        }
        .boxed()
    }
}

/// Which DynamoDB requests a [`FaultProxy`] refuses.
pub type StoreFault = dyn Fn(&str, &str) -> bool + Send + Sync;

pub struct TestApp {
    pub moto: Moto,
    /// Every principal's key (the services each use their own).
    pub keys: MeshKeys,
    pub address: SocketAddr,
    pub documents_address: SocketAddr,
    pub bedrock: Option<BedrockFake>,
    pub gemini: Option<GeminiFake>,
    pub agents: treven_agents::app::Agents,
    pub config: AgentsConfig,
    /// The real tenants service, when spawned with it.
    pub tenants: Option<Tenants>,
    /// Between the agents service and moto's DynamoDB, when spawned with
    /// store faults.
    pub store_faults: Option<FaultProxy>,
    shutdown: CancellationToken,
}

/// The real tenants service on a fresh database: the audit log.
pub struct Tenants {
    pub db: TestDatabase,
    pub store: treven_tenants::store::PgStore,
    pub address: SocketAddr,
    keys: MeshKeys,
    shutdown: CancellationToken,
}

impl Tenants {
    async fn start(keys: &MeshKeys) -> Self {
        let db = TestDatabase::create("treven_agents_test").await;
        let config = treven_tenants::TenantsConfig::from_env(&Env::from_pairs([(
            "TREVEN_TENANTS_DATABASE_URL",
            db.url.clone(),
        )]))
        .unwrap();
        let store =
            treven_tenants::store::PgStore::connect_lazy(config.database.clone(), &config.pool);
        store.migrate().await.expect("tenants migrations");
        let (address, shutdown) = serve_routes(
            "tenants",
            treven_tenants::routes(store.clone(), keys).unwrap(),
            "treven.tenants.v1.TenantsService",
        )
        .await;
        Self {
            db,
            store,
            address,
            keys: keys.clone(),
            shutdown,
        }
    }

    /// A new organisation in tenants.
    pub async fn org(&self) -> OrgId {
        use treven_tenants::model::{Name, OrgKind};
        self.store
            .admin_ensure_org(
                &Name::parse("name", &format!("agents test {}", Uuid::new_v4())).unwrap(),
                OrgKind::Ngo,
            )
            .await
            .unwrap()
            .id
    }

    pub async fn client(&self) -> TenantsServiceClient<Channel> {
        TenantsServiceClient::new(connect(self.address).await)
    }

    /// The audit entries on `resource_type/resource_id`, newest first, as
    /// the admin of `admin_token` (an agents token) reads them at the edge.
    pub async fn audit(
        &self,
        admin_token: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> Vec<tenants::AuditEvent> {
        let for_tenants = treven_testkit::policy::reissue(
            &self.keys,
            admin_token,
            Principal::Agents,
            Principal::Gateway,
            Principal::Tenants,
        );
        self.client()
            .await
            .list_audit_events(authed(
                &for_tenants,
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

    /// Stops the service and drops its database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.store.pool().close().await;
        self.db.drop().await;
    }
}

pub fn config(documents: SocketAddr, extra: &[(&str, &str)]) -> AgentsConfig {
    let mut pairs = vec![
        ("TREVEN_AGENTS_TABLE".to_owned(), TABLE.to_owned()),
        (
            "TREVEN_DOCUMENTS_URL".to_owned(),
            format!("http://{documents}"),
        ),
        ("TREVEN_SHUTDOWN_GRACE_SECS".to_owned(), "2".to_owned()),
        // No tenants unless a test starts one (`spawn_with_tenants`): the
        // audit log of oversight reads is then unreachable.
        (
            "TREVEN_TENANTS_URL".to_owned(),
            "http://127.0.0.1:1".to_owned(),
        ),
        ("TREVEN_MAX_MESSAGE_CHARS".to_owned(), "2000".to_owned()),
        ("TREVEN_MAX_PROMPT_CHARS".to_owned(), "20000".to_owned()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    AgentsConfig::from_env(&Env::from_pairs(pairs)).expect("config")
}

pub fn breaker(attempts: u32) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        cooldown: Duration::from_secs(30),
        attempts,
        retry_base: Duration::from_millis(20),
    }
}

pub async fn bedrock_provider(fake: &BedrockFake) -> BedrockProvider {
    BedrockProvider::with_client(bedrock_client(fake), OPUS)
}

/// The real Bedrock Runtime client pointed at `fake`, one attempt per call.
pub fn bedrock_client(fake: &BedrockFake) -> aws_sdk_bedrockruntime::Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_bedrockruntime::config::Region::new("eu-west-2"))
        .endpoint_url(fake.endpoint())
        .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .retry_config(
            aws_sdk_bedrockruntime::config::retry::RetryConfig::standard().with_max_attempts(1),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

pub fn gemini_provider(fake: &GeminiFake) -> GeminiProvider {
    GeminiProvider::new(GeminiConfig {
        project: "treven-test".into(),
        location: "europe-west2".into(),
        model: "gemini-2.5-pro".into(),
        endpoint: fake.endpoint().to_owned(),
        credential: GeminiCredential::AccessToken("ya29.test-token".into()),
    })
    .unwrap()
}

impl TestApp {
    pub async fn spawn(models: Models) -> Self {
        Self::spawn_with(models, FakeReports::default(), None).await
    }

    pub async fn spawn_with(
        models: Models,
        reports: FakeReports,
        events: Option<EventPublisher>,
    ) -> Self {
        Self::spawn_full(models, reports, events, None).await
    }

    /// With a guardrail (ApplyGuardrail against the Bedrock fake).
    pub async fn spawn_full(
        models: Models,
        reports: FakeReports,
        events: Option<EventPublisher>,
        guardrail: Option<&BedrockFake>,
    ) -> Self {
        Self::spawn_inner(models, reports, events, guardrail, &[], false, None).await
    }

    /// With the real tenants service as the audit log of oversight reads.
    pub async fn spawn_with_tenants(models: Models) -> Self {
        Self::spawn_inner(models, FakeReports::default(), None, None, &[], true, None).await
    }

    /// With extra `TREVEN_*` configuration.
    pub async fn spawn_configured(models: Models, extra: &[(&str, &str)]) -> Self {
        Self::spawn_inner(
            models,
            FakeReports::default(),
            None,
            None,
            extra,
            false,
            None,
        )
        .await
    }

    /// With the agents service's DynamoDB requests going through a
    /// [`FaultProxy`]: those `rule` picks (by `X-Amz-Target` and body) fail.
    pub async fn spawn_with_store_faults(
        models: Models,
        rule: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self::spawn_inner(
            models,
            FakeReports::default(),
            None,
            None,
            &[],
            false,
            Some(Box::new(rule)),
        )
        .await
    }

    async fn spawn_inner(
        models: Models,
        reports: FakeReports,
        events: Option<EventPublisher>,
        guardrail: Option<&BedrockFake>,
        extra: &[(&str, &str)],
        with_tenants: bool,
        store_fault: Option<Box<StoreFault>>,
    ) -> Self {
        let guarded = guardrail.is_some();
        let guardrail = guardrail.map(|fake| {
            treven_agents::guardrail::Guardrail::new(
                bedrock_client(fake),
                "gr-test".into(),
                "3".into(),
            )
        });
        let moto = Moto::start();
        let sdk = moto.sdk().await;
        let keys = MeshKeys::generate();

        // Documents, in-process, for the tools and the generator.
        let docs_config = treven_documents::DocumentsConfig::from_env(&Env::from_pairs([
            ("TREVEN_DATA_BUCKET", BUCKET),
            ("TREVEN_DOCUMENTS_TABLE", DOCS_TABLE),
            ("TREVEN_S3_FORCE_PATH_STYLE", "true"),
        ]))
        .unwrap();
        treven_documents::provision::create_bucket_and_table(&sdk, &docs_config)
            .await
            .unwrap();
        let documents = treven_documents::build(docs_config, &sdk, &keys).unwrap();
        let (documents_address, docs_shutdown) = serve_routes(
            "documents",
            treven_documents::routes(documents, &keys),
            treven_documents::SERVICE_NAME,
        )
        .await;

        let config = config(documents_address, extra);
        treven_agents::provision::create_table(&sdk, &config.table)
            .await
            .unwrap();
        let (router, bedrock, gemini) = match models {
            Models::Offline => (
                Router::new(Arc::new(OfflineProvider::default()), None, breaker(2)),
                None,
                None,
            ),
            Models::Fakes => {
                let bedrock = BedrockFake::start().await;
                let gemini = GeminiFake::start().await;
                let mut provider = bedrock_provider(&bedrock).await;
                if guarded {
                    // Converse carries the guardrail too, as configured in AWS.
                    provider = provider.with_guardrail("gr-test", "3");
                }
                let primary: Arc<dyn Provider> = Arc::new(provider);
                let secondary: Arc<dyn Provider> = Arc::new(gemini_provider(&gemini));
                (
                    Router::new(primary, Some(secondary), breaker(2)),
                    Some(bedrock),
                    Some(gemini),
                )
            }
        };
        let (agents_sdk, store_faults) = match store_fault {
            Some(rule) => {
                let proxy = FaultProxy::start(&moto.endpoint, rule).await;
                let sdk = treven_testkit::sdk_for(proxy.endpoint(), "test", "test").await;
                (sdk, Some(proxy))
            }
            None => (sdk.clone(), None),
        };
        let agents = treven_agents::build_with(
            &config,
            aws_sdk_dynamodb::Client::new(&agents_sdk),
            router,
            Box::new(reports),
            events,
            guardrail,
            keys.require_signer(Principal::Agents).unwrap(),
        )
        .unwrap();
        let tenants = if with_tenants {
            Some(Tenants::start(&keys).await)
        } else {
            None
        };
        let agents = match &tenants {
            Some(tenants) => agents.with_audit_log(treven_agents::app::AuditLog::new(
                connect(tenants.address).await,
                keys.require_signer(Principal::Agents).unwrap(),
            )),
            None => agents,
        };
        let (address, shutdown) = serve_routes(
            "agents",
            treven_agents::routes(agents.clone(), &keys),
            treven_agents::SERVICE_NAME,
        )
        .await;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            docs_shutdown.cancel();
        });
        Self {
            moto,
            keys,
            address,
            documents_address,
            bedrock,
            gemini,
            agents,
            config,
            tenants,
            store_faults,
            shutdown,
        }
    }

    /// Stops the tenants service, if any, and drops its database.
    pub async fn stop_tenants(&mut self) {
        if let Some(tenants) = self.tenants.take() {
            tenants.stop().await;
        }
    }

    pub fn tenants(&self) -> &Tenants {
        self.tenants.as_ref().unwrap()
    }

    /// A token of `user` in `org` with `role`.
    pub fn token_of(&self, org: OrgId, user: &str, role: Role) -> String {
        self.mint(Principal::Gateway, Principal::Agents, org, user, &[role])
    }

    pub fn bedrock(&self) -> &BedrockFake {
        self.bedrock.as_ref().unwrap()
    }

    pub fn gemini(&self) -> &GeminiFake {
        self.gemini.as_ref().unwrap()
    }

    /// A token for analyst `user-1` of `org` at the edge, for agents.
    pub fn token(&self, org: OrgId) -> String {
        self.token_to(Principal::Agents, org)
    }

    /// A token for analyst `user-1` of `org` at the edge, for `audience`.
    pub fn token_to(&self, audience: Principal, org: OrgId) -> String {
        self.mint(
            Principal::Gateway,
            audience,
            org,
            "user-1",
            &[Role::Analyst],
        )
    }

    /// A token minted by `issuer` for `audience`, acting for `user` of `org`
    /// with `roles`.
    pub fn mint(
        &self,
        issuer: Principal,
        audience: Principal,
        org: OrgId,
        user: &str,
        roles: &[Role],
    ) -> String {
        self.keys.signer(issuer).unwrap().mint(
            audience,
            org,
            user,
            roles,
            "req",
            Duration::from_secs(300),
        )
    }

    /// `token`'s user (an agents token), as `issuer` would call agents for
    /// them (the reports service asking for a generation).
    pub fn via(&self, issuer: Principal, token: &str) -> String {
        treven_testkit::policy::reissue(
            &self.keys,
            token,
            Principal::Agents,
            issuer,
            Principal::Agents,
        )
    }

    pub async fn client(&self) -> AgentsServiceClient<Channel> {
        AgentsServiceClient::new(connect(self.address).await)
    }

    pub async fn documents(&self) -> DocumentsServiceClient<Channel> {
        DocumentsServiceClient::new(connect(self.documents_address).await)
    }

    /// Adds a source for `org`.
    pub async fn add_source(&self, org: OrgId, title: &str, url: &str) -> String {
        let request = docs::UpsertSourceRequest {
            locator: Some(docs::upsert_source_request::Locator::Url(url.to_owned())),
            title: title.to_owned(),
            publisher: "Home Office".to_owned(),
            publisher_kind: docs::PublisherKind::Government.into(),
            published_at: Some(prost_types::Timestamp {
                seconds: 1_735_689_600,
                nanos: 0,
            }),
            summary: format!("{title}: national statistics on labour exploitation in agriculture"),
            tags: vec!["labour".into()],
            countries: vec!["GB".into()],
            sectors: vec!["agriculture".into()],
            primary_data: true,
            methodology_documented: true,
        };
        self.documents()
            .await
            .upsert_source(authed(&self.token_to(Principal::Documents, org), request))
            .await
            .unwrap()
            .into_inner()
            .source
            .unwrap()
            .id
    }

    pub async fn conversation(&self, org: OrgId) -> String {
        self.client()
            .await
            .create_conversation(authed(
                &self.token(org),
                pb::CreateConversationRequest {
                    context: Some(pb::ConversationContext {
                        country: "GB".into(),
                        sector: "agriculture".into(),
                        time_range: None,
                    }),
                    title: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .conversation
            .unwrap()
            .id
    }

    /// The stored messages of `conversation` (newest first), as its owner
    /// in `org` lists them.
    pub async fn messages(&self, org: OrgId, conversation: &str) -> Vec<pb::Message> {
        self.client()
            .await
            .list_messages(authed(
                &self.token(org),
                pb::ListMessagesRequest {
                    conversation_id: conversation.to_owned(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .items
    }

    /// Sends a message and collects the reply's events with their arrival times.
    pub async fn chat(
        &self,
        org: OrgId,
        conversation: &str,
        content: &str,
    ) -> Vec<(std::time::Instant, pb::SendMessageResponse)> {
        let mut stream = self
            .client()
            .await
            .send_message(authed(
                &self.token(org),
                pb::SendMessageRequest {
                    conversation_id: conversation.to_owned(),
                    content: content.to_owned(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("reply in time")
            .unwrap()
        {
            events.push((std::time::Instant::now(), event));
        }
        events
    }

    pub async fn usage(&self, org: OrgId) -> pb::GetUsageResponse {
        self.client()
            .await
            .get_usage(authed(&self.token(org), pb::GetUsageRequest::default()))
            .await
            .unwrap()
            .into_inner()
    }

    /// Polls a run until it is no longer running.
    pub async fn finished_run(&self, org: OrgId, id: &str) -> pb::AgentRun {
        for _ in 0..200 {
            let run = self
                .client()
                .await
                .get_run(authed(
                    &self.token(org),
                    pb::GetRunRequest { id: id.to_owned() },
                ))
                .await
                .unwrap()
                .into_inner()
                .run
                .unwrap();
            if run.status != i32::from(pb::RunStatus::Running) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} did not finish");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn serve_routes(
    name: &'static str,
    routes: tonic::service::Routes,
    health: &'static str,
) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let service = treven_mesh::server::GrpcService {
        name,
        routes,
        health_names: vec![health],
    };
    let policy = treven_mesh::server::ShutdownPolicy {
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(1),
        max_concurrent_requests: treven_mesh::server::DEFAULT_MAX_CONCURRENT_REQUESTS,
    };
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move { treven_mesh::server::serve(service, listener, shutdown, policy).await }
    });
    (address, shutdown)
}

pub async fn connect(address: SocketAddr) -> Channel {
    for _ in 0..50 {
        if let Ok(channel) = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

pub fn org() -> OrgId {
    OrgId::new(Uuid::now_v7())
}

pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    attach_context(&mut request, token).unwrap();
    request
}

/// The error code and the first field violation of a status.
pub fn error_of(status: &Status) -> (String, Option<String>) {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    let code = details
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    let field = details
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()));
    (code, field)
}

pub fn assert_code(
    result: Result<impl std::fmt::Debug, Status>,
    code: Code,
    reason: &str,
    field: Option<&str>,
) {
    let status = result.expect_err("the call fails");
    assert_eq!(status.code(), code, "{status:?}");
    let (got, got_field) = error_of(&status);
    assert_eq!(got, reason, "{status:?}");
    if let Some(field) = field {
        assert_eq!(got_field.as_deref(), Some(field), "{status:?}");
    }
}
