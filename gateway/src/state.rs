//! What every request handler shares.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::transport::Channel;
use treven_mesh::Principal;
use treven_mesh::client::ChannelOptions;
use treven_mesh::discovery::{Refresher, SystemResolver, Upstream, discovered_upstream};
use treven_mesh::keys::MeshKeys;

use treven_transcode::{OpenApiInfo, Transcoder};

use crate::GatewayConfig;
use crate::auth::JwtVerifier;
use crate::idempotency::Idempotency;
use crate::identity::ContextMinter;
use crate::ratelimit::RateLimiter;
use crate::reflection::Snapshot;

/// The gateway's shared state.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Configuration.
    pub config: Arc<GatewayConfig>,
    /// Cognito token verification.
    pub verifier: Arc<JwtVerifier>,
    /// Roles and mesh contexts.
    pub minter: Arc<ContextMinter>,
    /// Per-user limits.
    pub limiter: RateLimiter,
    /// Idempotency keys of REST writes (on the limiter's Redis).
    pub idempotency: Idempotency,
    /// A channel per built-in upstream gRPC service, by full service name
    /// (services found through reflection are in [`Routing`]).
    pub upstreams: Arc<HashMap<String, Channel>>,
    /// The mesh principal serving each of those services: the audience of
    /// the contexts sent to it.
    pub audiences: Arc<HashMap<String, Principal>>,
    /// The discovery loops of those channels (for services whose address is
    /// a DNS name or a list), to drop a dead endpoint at once.
    pub refreshers: Arc<HashMap<String, Refresher>>,
    /// Routes, public surface and OpenAPI document: replaced whole when
    /// reflection brings other descriptors ([`crate::reflection::refresh`]).
    routing: Arc<RwLock<Arc<Routing>>>,
    /// How many upstream retries are allowed (shared by all requests).
    pub retries: Arc<RetryBudget>,
}

/// What the gateway routes from at one moment. A request takes one
/// snapshot ([`Gateway::routing`]) and uses it throughout, so a refresh
/// never mixes two descriptor sets in one call.
#[derive(Debug)]
pub struct Routing {
    /// Routes and messages from the protos' `google.api.http` rules; its
    /// public surface is exactly the RPCs with a rule.
    pub transcoder: Arc<Transcoder>,
    /// The OpenAPI document of those routes.
    pub openapi: Arc<serde_json::Value>,
    /// Services known only through reflection, with the channel and
    /// principal of the upstream that reported them.
    reflected: HashMap<String, (Channel, Principal)>,
    /// The reflection answers these routes were built from (empty without
    /// reflection).
    pub snapshot: Snapshot,
}

impl Routing {
    /// Routing from the built-in descriptors only.
    pub fn builtin() -> anyhow::Result<Self> {
        Ok(Self::of(
            Transcoder::builtin()?,
            HashMap::new(),
            Snapshot::default(),
        ))
    }

    /// Routing from what the upstreams' reflection answered (`snapshot`),
    /// the built-in descriptors filling any gaps; a reflected service no
    /// built-in upstream is configured for is called on the upstream that
    /// reported it. Fails when the descriptors do not decode or their rules
    /// do not load (the caller keeps what it has).
    pub fn reflected(
        snapshot: Snapshot,
        upstreams: &HashMap<String, Channel>,
        audiences: &HashMap<String, Principal>,
    ) -> anyhow::Result<Self> {
        let mut files = std::collections::BTreeMap::new();
        let mut reflected = HashMap::new();
        for (upstream, answer) in &snapshot.by_upstream {
            let (Some(channel), Some(principal)) =
                (upstreams.get(upstream), audiences.get(upstream))
            else {
                continue;
            };
            for service in &answer.services {
                if !upstreams.contains_key(service) {
                    reflected
                        .entry(service.clone())
                        .or_insert_with(|| (channel.clone(), *principal));
                }
            }
            files.extend(answer.files.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if files.is_empty() {
            return Ok(Self::of(Transcoder::builtin()?, reflected, snapshot));
        }
        let set = crate::reflection::file_descriptor_set(files.values());
        let pool = prost_reflect::DescriptorPool::decode(set.as_slice())
            .map_err(|e| anyhow::anyhow!("reflected descriptors do not decode: {e}"))?;
        let transcoder = Transcoder::from_pool(pool)?
            .with_file_descriptor_set(treven_proto::FILE_DESCRIPTOR_SET)?;
        Ok(Self::of(transcoder, reflected, snapshot))
    }

    fn of(
        transcoder: Transcoder,
        reflected: HashMap<String, (Channel, Principal)>,
        snapshot: Snapshot,
    ) -> Self {
        let openapi = transcoder.openapi(&OpenApiInfo::default());
        Self {
            transcoder: Arc::new(transcoder),
            openapi: Arc::new(openapi),
            reflected,
            snapshot,
        }
    }
}

impl Gateway {
    /// The routing in force now (a cheap snapshot: take it once per request).
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the routing; requests already running keep theirs.
    pub fn set_routing(&self, routing: Routing) {
        *self.routing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routing);
    }

    /// The channel to the gRPC service `service` and the principal serving
    /// it (the audience of the contexts minted for it), per `routing`;
    /// `None` for a service no upstream serves.
    pub fn upstream_of(&self, routing: &Routing, service: &str) -> Option<(Channel, Principal)> {
        match (self.upstreams.get(service), self.audiences.get(service)) {
            (Some(channel), Some(principal)) => Some((channel.clone(), *principal)),
            _ => routing.reflected.get(service).cloned(),
        }
    }
}

/// A retry budget: each request deposits a tenth of a retry, each retry
/// withdraws one, and at most ten are saved up — so retries stay under about
/// 10 % of traffic however many requests fail.
#[derive(Debug, Default)]
pub struct RetryBudget {
    tenths: std::sync::atomic::AtomicU32,
}

impl RetryBudget {
    const CAP_TENTHS: u32 = 100;

    /// One request went through.
    pub fn deposit(&self) {
        use std::sync::atomic::Ordering;
        let _ = self
            .tenths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + 1).min(Self::CAP_TENTHS))
            });
    }

    /// Takes one retry if the budget has it.
    pub fn try_withdraw(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.tenths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(10))
            .is_ok()
    }
}

impl Gateway {
    /// Builds the state: channels to every service that follow DNS (Cloud
    /// Map names are re-resolved every 5 s), Redis, the JWKS verifier (keys
    /// are fetched on first use).
    pub async fn build(config: GatewayConfig, keys: MeshKeys) -> anyhow::Result<Self> {
        let options = ChannelOptions {
            call_timeout: config.upstream_timeout,
            ..ChannelOptions::default()
        };
        // The mesh's own services: where each is, and the principal serving
        // it (the audience of the contexts minted for it).
        let builtin = [
            (
                "treven.tenants.v1.TenantsService",
                Principal::Tenants,
                "TREVEN_TENANTS_URL",
                &config.tenants_url,
            ),
            (
                "treven.documents.v1.DocumentsService",
                Principal::Documents,
                "TREVEN_DOCUMENTS_URL",
                &config.documents_url,
            ),
            (
                "treven.reports.v1.ReportsService",
                Principal::Reports,
                "TREVEN_REPORTS_URL",
                &config.reports_url,
            ),
            (
                "treven.agents.v1.AgentsService",
                Principal::Agents,
                "TREVEN_AGENTS_URL",
                &config.agents_url,
            ),
        ];
        let audiences: HashMap<String, Principal> = builtin
            .iter()
            .map(|(service, principal, _, _)| ((*service).to_owned(), *principal))
            .collect();
        let discovered: HashMap<String, Upstream> = builtin
            .into_iter()
            .map(|(service, _, variable, url)| {
                treven_mesh::discovery::probe_in_background(variable, url);
                Ok((
                    service.to_owned(),
                    discovered_upstream(
                        url,
                        options,
                        Duration::from_secs(5),
                        Arc::new(SystemResolver),
                    )?,
                ))
            })
            .collect::<Result<_, tonic::transport::Error>>()?;
        let refreshers: HashMap<String, Refresher> = discovered
            .iter()
            .filter_map(|(service, up)| Some((service.clone(), up.refresher.clone()?)))
            .collect();
        let upstreams: HashMap<String, Channel> = discovered
            .into_iter()
            .map(|(service, up)| (service, up.channel))
            .collect();
        let tenants = upstreams
            .get("treven.tenants.v1.TenantsService")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no tenants channel"))?;
        let verifier = JwtVerifier::new(
            config.issuer.clone(),
            config.client_id.clone(),
            config.jwks_url.clone(),
            config.jwks_min_refresh,
            100_000,
        );
        let minter = ContextMinter::new(
            keys.require_signer(Principal::Gateway)?,
            tenants,
            config.role_ttl,
        );
        let limiter = RateLimiter::connect(
            &config.redis_url,
            config.rate_limit_per_minute,
            config.org_rate_limit_per_minute,
        )
        .await;
        let routing = if config.reflection {
            let snapshot = crate::reflection::snapshot(&upstreams, &Snapshot::default()).await;
            match Routing::reflected(snapshot, &upstreams, &audiences) {
                Ok(routing) => routing,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "reflected descriptors unusable, using built-in descriptors");
                    Routing::builtin()?
                }
            }
        } else {
            Routing::builtin()?
        };
        Ok(Self {
            routing: Arc::new(RwLock::new(Arc::new(routing))),
            retries: Arc::new(RetryBudget::default()),
            idempotency: Idempotency::new(limiter.clone(), config.upstream_timeout),
            config: Arc::new(config),
            verifier: Arc::new(verifier),
            minter: Arc::new(minter),
            limiter,
            upstreams: Arc::new(upstreams),
            audiences: Arc::new(audiences),
            refreshers: Arc::new(refreshers),
        })
    }
}
