//! Test stack: one fresh Postgres database shared by tenants (schema
//! `public`) and reports (schema `reports`), the real tenants service and
//! the real documents service (on moto) in-process, an agents double that
//! streams a deterministic report, and the reports service on port 0.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use treven_kj::{Content, SectionKey, content_from_pb, section_content_to_pb};
use treven_mesh::config::Env;
use treven_mesh::context::attach_context;
use treven_mesh::keys::MeshKeys;
use treven_mesh::server::GrpcService;
use treven_mesh::{CancellationToken, OrgId, Principal, Role};
use treven_proto::treven::agents::v1 as agents;
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::reports::v1::reports_service_client::ReportsServiceClient;
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use treven_reports::{ReportsApp, ReportsConfig};
use treven_testkit::{Moto, TestDatabase};

/// Serves `routes` on a free port until `shutdown`.
pub async fn serve_routes(
    name: &'static str,
    routes: tonic::service::Routes,
    shutdown: CancellationToken,
) -> std::net::SocketAddr {
    let policy = treven_mesh::server::ShutdownPolicy {
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(1),
        max_concurrent_requests: treven_mesh::server::DEFAULT_MAX_CONCURRENT_REQUESTS,
    };
    // The one way tests start a role (treven_testkit::InProcess).
    treven_testkit::InProcess::start_with(shutdown, |listener, shutdown| async move {
        let service = GrpcService {
            name,
            routes,
            health_names: vec![],
        };
        treven_mesh::server::serve(service, listener, shutdown, policy).await
    })
    .await
    .address
}

pub async fn channel(address: std::net::SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{address} did not start");
}

/// A TCP link to a service that a test can cut (every open connection
/// dropped, new ones accepted and closed at once, as when the service or
/// the network is down) and restore.
pub struct Link {
    /// Where to connect instead of the service.
    pub address: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Link {
    /// A link to `target`, up, until `shutdown`.
    pub async fn start(target: std::net::SocketAddr, shutdown: CancellationToken) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
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

/// How the agents double behaves for a report, chosen by the scope's sector.
pub const SECTOR_FAIL: &str = "always-failing";
pub const SECTOR_SLOW: &str = "slow";
/// The draft the offline generator writes for an organisation with no
/// usable sources: the same text with no citation markers and no citations.
pub const SECTOR_UNCITED: &str = "no-sources";

/// The agents double: GenerateReport streams a valid report section by
/// section; sector `always-failing` ends with an error event; sector `slow`
/// waits between sections.
/// (report id, sections asked for) of each GenerateReport call.
pub type Calls = Arc<Mutex<Vec<(String, Vec<String>)>>>;

#[derive(Clone, Default)]
pub struct FakeAgents {
    /// (report id, sections asked for) of every GenerateReport call.
    pub calls: Calls,
}

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl agents::agents_service_server::AgentsService for FakeAgents {
    async fn create_conversation(
        &self,
        _: Request<agents::CreateConversationRequest>,
    ) -> Result<Response<agents::CreateConversationResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    async fn list_conversations(
        &self,
        _: Request<agents::ListConversationsRequest>,
    ) -> Result<Response<agents::ListConversationsResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    async fn list_messages(
        &self,
        _: Request<agents::ListMessagesRequest>,
    ) -> Result<Response<agents::ListMessagesResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    type SendMessageStream = BoxStream<agents::SendMessageResponse>;
    async fn send_message(
        &self,
        _: Request<agents::SendMessageRequest>,
    ) -> Result<Response<Self::SendMessageStream>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    async fn get_usage(
        &self,
        _: Request<agents::GetUsageRequest>,
    ) -> Result<Response<agents::GetUsageResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    type GenerateReportStream = BoxStream<agents::GenerateReportResponse>;
    async fn generate_report(
        &self,
        request: Request<agents::GenerateReportRequest>,
    ) -> Result<Response<Self::GenerateReportStream>, Status> {
        let m = request.into_inner();
        self.calls
            .lock()
            .unwrap()
            .push((m.report_id.clone(), m.sections.clone()));
        let scope = m.scope.unwrap_or_default();
        let mut full = report_content(&scope.country, &m.instructions);
        if scope.sector == SECTOR_UNCITED {
            full = uncited(full);
        }
        let wanted: Vec<String> = if m.sections.is_empty() {
            GENERATED.iter().map(|s| s.to_string()).collect()
        } else {
            m.sections.clone()
        };
        let sector = scope.sector.clone();
        let stream = async_stream(move |tx| async move {
            let mut sequence = 0;
            let mut next = || {
                sequence += 1;
                sequence
            };
            if sector == SECTOR_FAIL {
                let _ = tx
                    .send(Ok(agents::GenerateReportResponse {
                        sequence: next(),
                        event: Some(agents::generate_report_response::Event::Error(
                            agents::StreamError {
                                code: "UNAVAILABLE".into(),
                                message: "model unavailable".into(),
                            },
                        )),
                    }))
                    .await;
                return;
            }
            for key in wanted {
                if sector == SECTOR_SLOW {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                let content = only_section(&full, &key);
                if tx
                    .send(Ok(agents::GenerateReportResponse {
                        sequence: next(),
                        event: Some(agents::generate_report_response::Event::Section(
                            agents::GeneratedSection {
                                section: key,
                                content: Some(content),
                            },
                        )),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx
                .send(Ok(agents::GenerateReportResponse {
                    sequence: next(),
                    event: Some(agents::generate_report_response::Event::Done(
                        agents::GenerationDone {
                            run_id: "run-1".into(),
                            usage: None,
                        },
                    )),
                }))
                .await;
        });
        Ok(Response::new(stream))
    }
    async fn detect_pii(
        &self,
        _: Request<agents::DetectPiiRequest>,
    ) -> Result<Response<agents::DetectPiiResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    async fn run_agent(
        &self,
        _: Request<agents::RunAgentRequest>,
    ) -> Result<Response<agents::RunAgentResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
    async fn get_run(
        &self,
        _: Request<agents::GetRunRequest>,
    ) -> Result<Response<agents::GetRunResponse>, Status> {
        Err(Status::unimplemented("not used by the reports tests"))
    }
}

/// A stream fed by a task through a channel.
fn async_stream<T, F, Fut>(f: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub const GENERATED: [&str; 9] = [
    "title_block",
    "key_judgements",
    "introduction",
    "recruitment",
    "demand",
    "money",
    "red_flag_indicators",
    "information_requirements",
    "headline_cards",
];

fn citation(id: &str, section: &str) -> pb::Citation {
    pb::Citation {
        id: id.into(),
        section: section.into(),
        claim: format!("claim {id}"),
        source: Some(pb::SourceReference {
            source_id: "0191a3c4-0000-7000-8000-000000000001".into(),
            label: "UNODC, Global Report on Trafficking in Persons (2024)".into(),
            url: "https://www.unodc.org/glotip".into(),
        }),
    }
}

const PARAGRAPH: &str = "Recruiters advertise seasonal agricultural work through social media groups and informal \
networks, promising accommodation, transport and steady wages that rarely match what workers later receive. \
Labour providers operating without a licence charge recruitment fees that leave workers in debt before they \
arrive, and the debt is then used to control where they live, how long they work and whether they can leave. \
Reporting from charities and inspectors points to the same pattern across several regions and seasons";

/// A report that passes every quality check (about 2,400 words).
pub fn report_content(country: &str, instructions: &str) -> pb::ReportContent {
    let mut citations = Vec::new();
    let body = |section: &str, paragraphs: usize, citations: &mut Vec<pb::Citation>| {
        let mut text = Vec::new();
        for i in 0..paragraphs {
            let id = format!("{}{}", &section[..3], i + 1);
            citations.push(citation(&id, section));
            text.push(format!("{PARAGRAPH} in {section} [{id}]."));
        }
        text.join("\n\n")
    };
    let introduction = body("introduction", 6, &mut citations);
    let recruitment = body("recruitment", 6, &mut citations);
    let demand = body("demand", 6, &mut citations);
    let mut money = body("money", 6, &mut citations);
    if instructions.contains("contact") {
        // Model output with personal data in it (regeneration redacts it).
        money.push_str(" Payments were routed through payroll@agency-example.com [mon1].");
    }
    let letters = ["A", "B", "C", "D", "E", "F"];
    let key_judgements = letters
        .iter()
        .enumerate()
        .map(|(i, letter)| {
            let id = format!("k{}", i + 1);
            citations.push(citation(&id, "key_judgements"));
            pb::KeyJudgement {
                letter: letter.to_string(),
                text: format!(
                    "Labour exploitation in agriculture is likely to rise over the next year as demand for seasonal workers grows {extra}[{id}].",
                    extra = if instructions.is_empty() { "" } else { "sharply " }
                ),
                confidence: if i == 0 {
                    pb::Confidence::High
                } else {
                    pb::Confidence::Medium
                }
                .into(),
            }
        })
        .collect();
    let headline_cards = [
        (pb::Pillar::Recruitment, "h1"),
        (pb::Pillar::Demand, "h2"),
        (pb::Pillar::Money, "h3"),
    ]
    .into_iter()
    .map(|(pillar, id)| {
        citations.push(citation(id, "headline_cards"));
        pb::HeadlineCard {
            pillar: pillar.into(),
            headline: "Seven in ten cases involve recruitment debt".into(),
            detail: format!("Debt bondage remains the main means of control [{id}]."),
        }
    })
    .collect();
    pb::ReportContent {
        title_block: Some(pb::TitleBlock {
            title: format!("LABOUR EXPLOITATION IN {country} AGRICULTURE"),
            country_region: country.into(),
            sector_theme: "Agriculture".into(),
            issued_at: None,
            issue_number: 1,
            overview: "This assessment covers labour exploitation in agriculture over the last year. \
It draws on open sources and inspection reports. It sets out how workers are recruited, what drives demand \
and how money moves."
                .into(),
        }),
        key_judgements,
        disclaimer: String::new(),
        introduction,
        recruitment,
        demand,
        money,
        red_flag_indicators: (1..=6)
            .map(|i| format!("Payments to many workers routed through one account, pattern {i}"))
            .collect(),
        information_requirements: (1..=4)
            .map(|i| format!("Which labour providers recruit for farms in region group {i}?"))
            .collect(),
        headline_cards,
        citations,
        uncertainty_flags: vec![],
    }
}

/// `content` as written without sources: no citations, and no markers in
/// any judgement, card or paragraph (as the offline generator does when the
/// organisation has no usable sources).
pub fn uncited(mut content: pb::ReportContent) -> pb::ReportContent {
    fn strip(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(" [") {
            out.push_str(&rest[..open]);
            match rest[open..].find(']') {
                Some(close) => rest = &rest[open + close + 1..],
                None => {
                    rest = &rest[open..];
                    break;
                }
            }
        }
        out.push_str(rest);
        out.replace(['[', ']'], "")
    }
    content.citations.clear();
    for kj in &mut content.key_judgements {
        kj.text = strip(&kj.text);
    }
    for card in &mut content.headline_cards {
        card.detail = strip(&card.detail);
    }
    for text in [
        &mut content.introduction,
        &mut content.recruitment,
        &mut content.demand,
        &mut content.money,
    ] {
        *text = strip(text);
    }
    content
}

/// `full` with only `key`'s field, citations and flags, as the agents
/// service streams a generated section (through the KJ contract).
pub fn only_section(full: &pb::ReportContent, key: &str) -> pb::ReportContent {
    let Some(section) = SectionKey::parse(key) else {
        return pb::ReportContent::default();
    };
    let mut only = Content::default();
    only.replace_section(section, &content_from_pb(full.clone()));
    section_content_to_pb(section, &only)
}

pub const BUCKET: &str = "treven-data-reports-test";
pub const TABLE: &str = "treven-documents-reports-test";

/// Everything the reports service talks to, plus the service itself.
pub struct Stack {
    pub db: TestDatabase,
    pub moto: Moto,
    /// Every principal's key (the services each use their own).
    pub keys: MeshKeys,
    pub agents: FakeAgents,
    pub tenants_store: treven_tenants::store::PgStore,
    pub tenants: TenantsServiceClient<Channel>,
    pub reports: ReportsServiceClient<Channel>,
    pub reports_address: std::net::SocketAddr,
    pub app: ReportsApp,
    pub shutdown: CancellationToken,
    /// Stops the outbox relay the stack runs (a child of `shutdown`).
    pub relay_shutdown: CancellationToken,
    /// Reports reaches tenants through this link (tests cut it).
    pub tenants_link: Link,
    pub redis_url: String,
}

impl Stack {
    /// Starts the stack with `workers` generation workers.
    pub async fn start(workers: usize) -> Self {
        let db = TestDatabase::create("treven_reports_test").await;
        let keys = MeshKeys::generate();
        let shutdown = CancellationToken::new();

        // Tenants, on the shared database: migrated as the owner, served as
        // its login role; `tenants_store` is the owner's (operator paths).
        let tenants_env = Env::from_pairs([
            (
                "TREVEN_TENANTS_DATABASE_URL",
                db.login_url(treven_tenants::LOGIN_ROLE),
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", TestDatabase::owner_user()),
        ]);
        let tenants_config = treven_tenants::TenantsConfig::from_env(&tenants_env).unwrap();
        let tenants_owner = treven_tenants::owner_config(&tenants_env).unwrap();
        treven_tenants::migrate(&tenants_owner)
            .await
            .expect("tenants migrations");
        let tenants_store = treven_tenants::owner_store(&tenants_owner);
        let tenants_addr = serve_routes(
            "tenants",
            treven_tenants::routes(
                treven_tenants::store::PgStore::connect_lazy(
                    tenants_config.database.clone(),
                    &tenants_config.pool,
                ),
                &keys,
            )
            .unwrap(),
            shutdown.clone(),
        )
        .await;

        // Documents, on moto.
        let moto = Moto::start();
        let sdk = moto.sdk().await;
        let documents_config = treven_documents::DocumentsConfig::from_env(&Env::from_pairs([
            ("TREVEN_DATA_BUCKET", BUCKET),
            ("TREVEN_DOCUMENTS_TABLE", TABLE),
            ("TREVEN_S3_FORCE_PATH_STYLE", "true"),
        ]))
        .unwrap();
        treven_documents::provision::create_bucket_and_table(&sdk, &documents_config)
            .await
            .expect("bucket and table");
        let documents = treven_documents::build(documents_config, &sdk, &keys).unwrap();
        let documents_addr = serve_routes(
            "documents",
            treven_documents::routes(documents, &keys),
            shutdown.clone(),
        )
        .await;

        // The agents double.
        let agents = FakeAgents::default();
        let agents_addr = serve_routes(
            "agents",
            tonic::service::Routes::new(agents::agents_service_server::AgentsServiceServer::new(
                agents.clone(),
            )),
            shutdown.clone(),
        )
        .await;

        let redis_url = "redis://127.0.0.1:6379".to_owned();
        let tenants_link = Link::start(tenants_addr, shutdown.clone()).await;
        // Reports: migrated as the owner, served (and its workers run) as its
        // login role.
        let env = Env::from_pairs([
            (
                "TREVEN_REPORTS_DATABASE_URL",
                db.login_url(treven_reports::config::LOGIN_ROLE),
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", TestDatabase::owner_user()),
            (
                "TREVEN_TENANTS_URL",
                format!("http://{}", tenants_link.address),
            ),
            ("TREVEN_DOCUMENTS_URL", format!("http://{documents_addr}")),
            ("TREVEN_AGENTS_URL", format!("http://{agents_addr}")),
            ("TREVEN_REDIS_URL", redis_url.clone()),
            ("TREVEN_REPORTS_WORKERS", workers.to_string()),
            ("TREVEN_REPORTS_POLL_MILLIS", "50".into()),
            ("TREVEN_REPORTS_HEARTBEAT_MILLIS", "100".into()),
            ("TREVEN_REPORTS_LEASE_MILLIS", "700".into()),
            ("TREVEN_REPORTS_MAX_ATTEMPTS", "2".into()),
            ("TREVEN_REPORTS_BACKOFF_MILLIS", "100".into()),
            ("TREVEN_REPORTS_GENERATION_TIMEOUT_SECS", "20".into()),
            ("TREVEN_REPORTS_MAX_FIELD_CHARS", "20000".into()),
            ("TREVEN_REPORTS_CALL_TIMEOUT_SECS", "3".into()),
            ("TREVEN_REPORTS_OUTBOX_SWEEP_MILLIS", "100".into()),
            ("TREVEN_REPORTS_OUTBOX_BACKOFF_MILLIS", "50".into()),
            ("TREVEN_REPORTS_OUTBOX_BACKOFF_MAX_MILLIS", "400".into()),
        ]);
        let config = ReportsConfig::from_env(&env).unwrap();
        treven_reports::migrate(&treven_reports::owner_config(&env).unwrap())
            .await
            .expect("reports migrations");
        let app = ReportsApp::build(config, &keys).unwrap();
        for _ in 0..workers {
            tokio::spawn(app.worker().run(shutdown.clone()));
        }
        let relay_shutdown = shutdown.child_token();
        tokio::spawn(app.relay().run(relay_shutdown.clone()));
        let reports_addr = serve_routes("reports", app.routes(), shutdown.clone()).await;
        let reports = ReportsServiceClient::new(channel(reports_addr).await);
        let tenants = TenantsServiceClient::new(channel(tenants_addr).await);
        Self {
            db,
            moto,
            keys,
            agents,
            tenants_store,
            tenants,
            reports,
            reports_address: reports_addr,
            app,
            shutdown,
            relay_shutdown,
            tenants_link,
            redis_url,
        }
    }

    /// Waits until the outbox relay has delivered every pending event.
    pub async fn drain_outbox(&self) {
        for _ in 0..400 {
            if self.app.store.outbox_pending().await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "outbox still holds {} events",
            self.app.store.outbox_pending().await.unwrap()
        );
    }

    /// A new organisation in tenants.
    pub async fn org(&self, name: &str) -> OrgId {
        use treven_tenants::model::{Name, OrgKind};
        self.tenants_store
            .admin_ensure_org(
                &Name::parse("name", &format!("{name} {}", uuid::Uuid::new_v4())).unwrap(),
                OrgKind::Ngo,
            )
            .await
            .unwrap()
            .id
    }

    /// A token for `sub` at the edge, for the reports service.
    pub fn token(&self, org: OrgId, sub: &str, role: Role) -> String {
        self.keys.signer(Principal::Gateway).unwrap().mint(
            Principal::Reports,
            org,
            sub,
            &[role],
            &uuid::Uuid::new_v4().to_string(),
            Duration::from_secs(600),
        )
    }

    /// `token`'s user at the edge again, for another service (`tenants`).
    pub fn retarget(&self, token: &str, audience: Principal) -> String {
        treven_testkit::policy::reissue(
            &self.keys,
            token,
            Principal::Reports,
            Principal::Gateway,
            audience,
        )
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.app.store.pool().close().await;
        self.tenants_store.pool().close().await;
        self.db.drop().await;
    }

    /// Waits until the report leaves `generating`.
    pub async fn wait_generated(&self, token: &str, id: &str) -> pb::GetReportResponse {
        for _ in 0..300 {
            let got = self
                .reports
                .clone()
                .get_report(authed(
                    token,
                    pb::GetReportRequest {
                        id: id.into(),
                        version: 0,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if got.report.as_ref().unwrap().status != pb::ReportStatus::Generating as i32 {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("report {id} still generating");
    }

    /// Audit actions recorded for report `id`, oldest first, once the
    /// outbox relay has delivered everything pending.
    pub async fn audit_actions(&self, token: &str, id: &str) -> Vec<tenants::AuditEvent> {
        self.drain_outbox().await;
        let mut events = self
            .tenants
            .clone()
            .list_audit_events(authed(
                &self.retarget(token, Principal::Tenants),
                tenants::ListAuditEventsRequest {
                    limit: 100,
                    resource_type: "report".into(),
                    resource_id: id.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .items;
        events.reverse();
        events
    }
}

pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    attach_context(&mut request, token).unwrap();
    request
}

pub fn scope(country: &str, sector: &str) -> pb::ReportScope {
    pb::ReportScope {
        country: country.into(),
        region: String::new(),
        sector: sector.into(),
        exploitation_type: pb::ExploitationType::Labour.into(),
        time_range: None,
        client_type: tenants::OrganisationKind::Fi.into(),
    }
}

pub fn code_of(status: &Status) -> &'static str {
    treven_mesh::ErrorCode::of_status(status).as_str()
}

pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The checks of a FAILED_PRECONDITION from SubmitReport, from its
/// `QualityChecksFailed` detail.
pub fn failed_checks(status: &Status) -> Vec<pb::QualityCheck> {
    use prost::Message as _;
    let decoded = tonic_types::pb::Status::decode(status.details()).expect("status details");
    decoded
        .details
        .iter()
        .find(|any| {
            any.type_url
                .ends_with("treven.reports.v1.QualityChecksFailed")
        })
        .map(|any| {
            pb::QualityChecksFailed::decode(any.value.as_slice())
                .unwrap()
                .checks
        })
        .unwrap_or_default()
}

/// The PII findings of a PII_DETECTED status.
pub fn pii_findings(status: &Status) -> Vec<pb::PiiFinding> {
    use prost::Message as _;
    let decoded = tonic_types::pb::Status::decode(status.details()).expect("status details");
    decoded
        .details
        .iter()
        .find(|any| any.type_url.ends_with("treven.reports.v1.PiiDetected"))
        .map(|any| {
            pb::PiiDetected::decode(any.value.as_slice())
                .unwrap()
                .findings
        })
        .unwrap_or_default()
}
