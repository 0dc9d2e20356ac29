//! What every request handler shares.

use std::collections::HashMap;
use std::sync::Arc;
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
    /// A channel per upstream gRPC service, by full service name.
    pub upstreams: Arc<HashMap<String, Channel>>,
    /// The mesh principal serving each of those services: the audience of
    /// the contexts sent to it (a service found through reflection belongs
    /// to the upstream that reported it).
    pub audiences: Arc<HashMap<String, Principal>>,
    /// The discovery loops of those channels (for services whose address is
    /// a DNS name or a list), to drop a dead endpoint at once.
    pub refreshers: Arc<HashMap<String, Refresher>>,
    /// Routes and messages from the protos' `google.api.http` rules.
    pub transcoder: Arc<Transcoder>,
    /// The OpenAPI document of those routes (built once).
    pub openapi: Arc<serde_json::Value>,
    /// How many upstream retries are allowed (shared by all requests).
    pub retries: Arc<RetryBudget>,
}

impl Gateway {
    /// The principal serving gRPC service `service` (the audience of the
    /// contexts minted for it); `None` for a service no upstream serves.
    pub fn audience_of(&self, service: &str) -> Option<Principal> {
        self.audiences.get(service).copied()
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
        let mut audiences: HashMap<String, Principal> = builtin
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
        let mut upstreams = upstreams;
        let transcoder = if config.reflection {
            reflected_transcoder(&mut upstreams, &mut audiences).await?
        } else {
            Transcoder::builtin()?
        };
        let openapi = transcoder.openapi(&OpenApiInfo::default());
        Ok(Self {
            transcoder: Arc::new(transcoder),
            openapi: Arc::new(openapi),
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

/// A transcoder built from what each upstream serves (see
/// [`crate::reflection`]); services found there are routed to the upstream
/// that reported them. Falls back to the built-in descriptors.
async fn reflected_transcoder(
    upstreams: &mut HashMap<String, Channel>,
    audiences: &mut HashMap<String, Principal>,
) -> anyhow::Result<Transcoder> {
    let mut files = std::collections::BTreeMap::new();
    let known: Vec<(String, Channel)> = upstreams
        .iter()
        .map(|(name, channel)| (name.clone(), channel.clone()))
        .collect();
    for (name, channel) in known {
        match crate::reflection::fetch(channel.clone(), Duration::from_secs(3)).await {
            Ok(reflected) => {
                tracing::info!(upstream = %name, services = reflected.services.len(), files = reflected.files.len(), "descriptors from reflection");
                let principal = audiences.get(&name).copied();
                for service in reflected.services {
                    upstreams
                        .entry(service.clone())
                        .or_insert_with(|| channel.clone());
                    if let Some(principal) = principal {
                        audiences.entry(service).or_insert(principal);
                    }
                }
                files.extend(reflected.files);
            }
            Err(error) => {
                tracing::warn!(upstream = %name, error = %format!("{error:#}"), "no reflection, using built-in descriptors")
            }
        }
    }
    if files.is_empty() {
        return Ok(Transcoder::builtin()?);
    }
    let set = crate::reflection::file_descriptor_set(files.values());
    let pool = match prost_reflect::DescriptorPool::decode(set.as_slice()) {
        Ok(pool) => pool,
        Err(error) => {
            tracing::warn!(%error, "reflected descriptors are incomplete, using built-in descriptors");
            return Ok(Transcoder::builtin()?);
        }
    };
    Ok(Transcoder::from_pool(pool)?.with_file_descriptor_set(treven_proto::FILE_DESCRIPTOR_SET)?)
}
