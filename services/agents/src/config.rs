//! Configuration of the agents service, from `TREVEN_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use treven_mesh::client::service_url;
use treven_mesh::config::{ConfigError, Env, Environment};
use treven_mesh::server::ShutdownPolicy;

/// The gRPC port of the agents service.
pub const DEFAULT_PORT: u16 = 50054;
/// The port of the AgentCore Runtime contract (`/ping`, `/invocations`).
pub const DEFAULT_RUNTIME_PORT: u16 = 8080;
/// Claude Opus 4.5 through the EU cross-region inference profile.
pub const DEFAULT_BEDROCK_MODEL: &str = "eu.anthropic.claude-opus-4-5-20251101-v1:0";
/// The Bedrock region (London; the `eu.` profile keeps data in the EU).
pub const DEFAULT_BEDROCK_REGION: &str = "eu-west-2";
/// The Gemini model on Vertex AI.
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-pro";
/// The Vertex AI location (London).
pub const DEFAULT_GEMINI_LOCATION: &str = "europe-west2";

/// Which model provider serves a slot (primary or secondary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Amazon Bedrock ConverseStream.
    Bedrock,
    /// Gemini on Vertex AI.
    Gemini,
    /// The deterministic, network-free provider.
    Offline,
}

impl ProviderKind {
    fn parse(env: &Env, name: &str, raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "bedrock" => Ok(Self::Bedrock),
            "gemini" => Ok(Self::Gemini),
            "offline" => Ok(Self::Offline),
            other => Err(env.error(
                name,
                format!("must be bedrock, gemini or offline, got {other:?}"),
            )),
        }
    }
}

/// Bedrock settings.
#[derive(Debug, Clone)]
pub struct BedrockConfig {
    /// `TREVEN_BEDROCK_MODEL_ID` (default [`DEFAULT_BEDROCK_MODEL`]).
    pub model_id: String,
    /// `TREVEN_BEDROCK_REGION` (default `eu-west-2`).
    pub region: String,
    /// `TREVEN_BEDROCK_ENDPOINT`: an endpoint override (tests, VPC
    /// endpoints); unset means the regional AWS endpoint.
    pub endpoint: Option<String>,
    /// `TREVEN_BEDROCK_MAX_ATTEMPTS`: SDK attempts per call (default 1: the
    /// router retries, before the first token only).
    pub sdk_max_attempts: u32,
    /// `TREVEN_GUARDRAIL_ID`: a Bedrock guardrail whose `ApplyGuardrail`
    /// PII findings are added to DetectPii's; unset means local only.
    pub guardrail_id: Option<String>,
    /// `TREVEN_GUARDRAIL_VERSION` (default `DRAFT`).
    pub guardrail_version: String,
}

/// Gemini (Vertex AI) settings.
#[derive(Clone)]
pub struct GeminiConfig {
    /// `TREVEN_GEMINI_PROJECT`: the Google Cloud project.
    pub project: String,
    /// `TREVEN_GEMINI_LOCATION` (default `europe-west2`).
    pub location: String,
    /// `TREVEN_GEMINI_MODEL` (default [`DEFAULT_GEMINI_MODEL`]).
    pub model: String,
    /// `TREVEN_GEMINI_ENDPOINT` (default `https://{location}-aiplatform.googleapis.com`).
    pub endpoint: String,
    /// The credential: `TREVEN_GEMINI_ACCESS_TOKEN` (an OAuth 2 access token,
    /// sent as `Authorization: Bearer`) or `TREVEN_GEMINI_API_KEY` (a Vertex
    /// API key, sent as `x-goog-api-key`). Never logged.
    pub credential: GeminiCredential,
}

impl std::fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("project", &self.project)
            .field("location", &self.location)
            .field("model", &self.model)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// How requests to Vertex AI authenticate.
#[derive(Clone)]
pub enum GeminiCredential {
    /// `Authorization: Bearer <token>`.
    AccessToken(String),
    /// `x-goog-api-key: <key>`.
    ApiKey(String),
}

/// The circuit breaker in front of the primary provider.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// `TREVEN_BREAKER_FAILURES`: consecutive failed requests that open it
    /// (default 3).
    pub failure_threshold: u32,
    /// `TREVEN_BREAKER_COOLDOWN_SECS`: how long it stays open before one
    /// probe request is let through (default 30).
    pub cooldown: Duration,
    /// `TREVEN_MODEL_RETRIES`: attempts per provider before the first token
    /// (default 3).
    pub attempts: u32,
    /// `TREVEN_MODEL_RETRY_BASE_MS`: first backoff, doubled per attempt
    /// (default 200).
    pub retry_base: Duration,
}

/// Input limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `TREVEN_MAX_MESSAGE_CHARS`: longest analyst message (default 8,000).
    pub max_message_chars: usize,
    /// `TREVEN_MAX_PROMPT_CHARS`: longest prompt sent to a model, history
    /// and inputs included (default 200,000).
    pub max_prompt_chars: usize,
    /// `TREVEN_MAX_STREAM_SECS`: longest reply or generation (default 300).
    pub max_stream: Duration,
    /// `TREVEN_MAX_TOOL_TURNS`: model calls per reply (default 6).
    pub max_turns: usize,
    /// `TREVEN_MAX_OUTPUT_TOKENS`: per model call (default 4,096).
    pub max_output_tokens: u32,
}

/// Configuration of the agents service.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// `TREVEN_AGENTS_ADDR` (default `127.0.0.1:50054` locally, `0.0.0.0:50054` in AWS).
    pub listen: SocketAddr,
    /// `TREVEN_AGENT_RUNTIME_ADDR` (default `127.0.0.1:8080` locally,
    /// `0.0.0.0:8080` in AWS, as AgentCore Runtime requires).
    pub runtime_listen: SocketAddr,
    /// `TREVEN_AGENTS_TABLE` (default `treven-agents-{env}`).
    pub table: String,
    /// `TREVEN_MODEL_PRIMARY`: bedrock, gemini or offline (default offline
    /// locally, bedrock in AWS).
    pub primary: ProviderKind,
    /// `TREVEN_MODEL_SECONDARY`: bedrock, gemini, offline or none (default
    /// none locally, gemini in AWS).
    pub secondary: Option<ProviderKind>,
    /// `TREVEN_OFFLINE_LATENCY_MS`: how long the offline model waits before
    /// answering each call (default 0, at most 60,000).
    pub offline_latency: Duration,
    /// Bedrock settings.
    pub bedrock: BedrockConfig,
    /// Gemini settings; `None` when no credential is configured.
    pub gemini: Option<GeminiConfig>,
    /// Breaker and retries.
    pub breaker: BreakerConfig,
    /// Input limits.
    pub limits: Limits,
    /// `TREVEN_TENANTS_URL` (default `http://127.0.0.1:50051`): the audit
    /// log of admins' oversight reads.
    pub tenants_url: String,
    /// `TREVEN_DOCUMENTS_URL` (default `http://127.0.0.1:50052`).
    pub documents_url: String,
    /// `TREVEN_REPORTS_URL` (default `http://127.0.0.1:50053`).
    pub reports_url: String,
    /// `TREVEN_REDIS_URL` (default `redis://127.0.0.1:6379` locally): where
    /// chat events are published for WebSocket clients. Optional in AWS: the
    /// AgentCore runtime streams over SSE and publishes none.
    pub redis_url: Option<String>,
    /// Drain and grace periods.
    pub shutdown: ShutdownPolicy,
}

impl AgentsConfig {
    /// Reads and validates the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let local = environment == Environment::Local;
        let primary = match env.get("TREVEN_MODEL_PRIMARY") {
            Some(raw) => ProviderKind::parse(env, "TREVEN_MODEL_PRIMARY", &raw)?,
            None if local => ProviderKind::Offline,
            None => ProviderKind::Bedrock,
        };
        let gemini = Self::gemini(env)?;
        // The secondary is optional: in AWS it is Gemini when Gemini's
        // credentials are configured, and none (Bedrock alone) otherwise.
        let secondary = match env.get("TREVEN_MODEL_SECONDARY") {
            Some(raw) if raw.trim().eq_ignore_ascii_case("none") => None,
            Some(raw) => Some(ProviderKind::parse(env, "TREVEN_MODEL_SECONDARY", &raw)?),
            None if local || gemini.is_none() => None,
            None => Some(ProviderKind::Gemini),
        };
        if secondary == Some(primary) {
            return Err(env.error(
                "TREVEN_MODEL_SECONDARY",
                "must differ from TREVEN_MODEL_PRIMARY",
            ));
        }
        let bedrock = BedrockConfig {
            model_id: env
                .get("TREVEN_BEDROCK_MODEL_ID")
                .unwrap_or_else(|| DEFAULT_BEDROCK_MODEL.to_owned()),
            region: env
                .get("TREVEN_BEDROCK_REGION")
                .unwrap_or_else(|| DEFAULT_BEDROCK_REGION.to_owned()),
            endpoint: env.get("TREVEN_BEDROCK_ENDPOINT"),
            sdk_max_attempts: env.parse_or("TREVEN_BEDROCK_MAX_ATTEMPTS", 1)?,
            guardrail_id: env.get("TREVEN_GUARDRAIL_ID"),
            guardrail_version: env
                .get("TREVEN_GUARDRAIL_VERSION")
                .unwrap_or_else(|| "DRAFT".to_owned()),
        };
        if !(1..=5).contains(&bedrock.sdk_max_attempts) {
            return Err(env.error("TREVEN_BEDROCK_MAX_ATTEMPTS", "must be between 1 and 5"));
        }
        if gemini.is_none()
            && (primary == ProviderKind::Gemini || secondary == Some(ProviderKind::Gemini))
        {
            return Err(env.error(
                "TREVEN_GEMINI_PROJECT",
                "gemini is selected: set TREVEN_GEMINI_PROJECT and TREVEN_GEMINI_ACCESS_TOKEN or TREVEN_GEMINI_API_KEY",
            ));
        }
        let breaker = BreakerConfig {
            failure_threshold: env.parse_or("TREVEN_BREAKER_FAILURES", 3)?,
            cooldown: env.seconds_or("TREVEN_BREAKER_COOLDOWN_SECS", 30, 1..=3600)?,
            attempts: env.parse_or("TREVEN_MODEL_RETRIES", 3)?,
            retry_base: Duration::from_millis(env.parse_or("TREVEN_MODEL_RETRY_BASE_MS", 200)?),
        };
        if !(1..=100).contains(&breaker.failure_threshold) {
            return Err(env.error("TREVEN_BREAKER_FAILURES", "must be between 1 and 100"));
        }
        if !(1..=10).contains(&breaker.attempts) {
            return Err(env.error("TREVEN_MODEL_RETRIES", "must be between 1 and 10"));
        }
        if breaker.retry_base > Duration::from_secs(10) {
            return Err(env.error("TREVEN_MODEL_RETRY_BASE_MS", "must be at most 10000"));
        }
        let limits = Limits {
            max_message_chars: env.parse_or("TREVEN_MAX_MESSAGE_CHARS", 8_000)?,
            max_prompt_chars: env.parse_or("TREVEN_MAX_PROMPT_CHARS", 200_000)?,
            max_stream: env.seconds_or("TREVEN_MAX_STREAM_SECS", 300, 1..=3600)?,
            max_turns: env.parse_or("TREVEN_MAX_TOOL_TURNS", 6)?,
            max_output_tokens: env.parse_or("TREVEN_MAX_OUTPUT_TOKENS", 4_096)?,
        };
        if !(1..=100_000).contains(&limits.max_message_chars) {
            return Err(env.error("TREVEN_MAX_MESSAGE_CHARS", "must be between 1 and 100000"));
        }
        if !(1_000..=2_000_000).contains(&limits.max_prompt_chars) {
            return Err(env.error(
                "TREVEN_MAX_PROMPT_CHARS",
                "must be between 1000 and 2000000",
            ));
        }
        if limits.max_message_chars * 2 > limits.max_prompt_chars {
            return Err(env.error(
                "TREVEN_MAX_PROMPT_CHARS",
                "must be at least twice TREVEN_MAX_MESSAGE_CHARS (room for the system prompt and history)",
            ));
        }
        if !(1..=20).contains(&limits.max_turns) {
            return Err(env.error("TREVEN_MAX_TOOL_TURNS", "must be between 1 and 20"));
        }
        if !(256..=64_000).contains(&limits.max_output_tokens) {
            return Err(env.error("TREVEN_MAX_OUTPUT_TOKENS", "must be between 256 and 64000"));
        }
        let offline_latency: u64 = env.parse_or("TREVEN_OFFLINE_LATENCY_MS", 0)?;
        if offline_latency > 60_000 {
            return Err(env.error("TREVEN_OFFLINE_LATENCY_MS", "must be at most 60000"));
        }
        let env_name = environment.as_str();
        Ok(Self {
            listen: env.socket_addr_or(
                "TREVEN_AGENTS_ADDR",
                environment.default_listen(DEFAULT_PORT),
            )?,
            runtime_listen: env.socket_addr_or(
                "TREVEN_AGENT_RUNTIME_ADDR",
                environment.default_listen(DEFAULT_RUNTIME_PORT),
            )?,
            table: env
                .get("TREVEN_AGENTS_TABLE")
                .unwrap_or_else(|| format!("treven-agents-{env_name}")),
            primary,
            secondary,
            offline_latency: Duration::from_millis(offline_latency),
            bedrock,
            gemini,
            breaker,
            limits,
            tenants_url: service_url(env, "TREVEN_TENANTS_URL", "http://127.0.0.1:50051")?,
            documents_url: service_url(env, "TREVEN_DOCUMENTS_URL", "http://127.0.0.1:50052")?,
            reports_url: service_url(env, "TREVEN_REPORTS_URL", "http://127.0.0.1:50053")?,
            redis_url: match (local, env.get("TREVEN_REDIS_URL")) {
                (false, None) => None,
                _ => Some(treven_mesh::events::redis_url(env)?),
            },
            shutdown: ShutdownPolicy::from_env(env)?,
        })
    }

    fn gemini(env: &Env) -> Result<Option<GeminiConfig>, ConfigError> {
        let credential = match (
            env.get("TREVEN_GEMINI_ACCESS_TOKEN"),
            env.get("TREVEN_GEMINI_API_KEY"),
        ) {
            (Some(_), Some(_)) => {
                return Err(env.error(
                    "TREVEN_GEMINI_API_KEY",
                    "set either TREVEN_GEMINI_ACCESS_TOKEN or TREVEN_GEMINI_API_KEY, not both",
                ));
            }
            (Some(token), None) => GeminiCredential::AccessToken(token.trim().to_owned()),
            (None, Some(key)) => GeminiCredential::ApiKey(key.trim().to_owned()),
            (None, None) => return Ok(None),
        };
        let location = env
            .get("TREVEN_GEMINI_LOCATION")
            .unwrap_or_else(|| DEFAULT_GEMINI_LOCATION.to_owned());
        let endpoint = env
            .get("TREVEN_GEMINI_ENDPOINT")
            .unwrap_or_else(|| format!("https://{location}-aiplatform.googleapis.com"));
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(env.error("TREVEN_GEMINI_ENDPOINT", "must be an http(s) URL"));
        }
        Ok(Some(GeminiConfig {
            project: env.required("TREVEN_GEMINI_PROJECT")?,
            location,
            model: env
                .get("TREVEN_GEMINI_MODEL")
                .unwrap_or_else(|| DEFAULT_GEMINI_MODEL.to_owned()),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            credential,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn local_defaults_are_offline_without_a_secondary() {
        let config = AgentsConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.primary, ProviderKind::Offline);
        assert_eq!(config.secondary, None);
        assert_eq!(config.table, "treven-agents-local");
        assert_eq!(config.listen.port(), 50054);
        assert_eq!(config.runtime_listen.port(), 8080);
        assert_eq!(config.bedrock.model_id, DEFAULT_BEDROCK_MODEL);
        assert_eq!(config.bedrock.region, "eu-west-2");
    }

    #[test]
    fn aws_runs_on_bedrock_alone_unless_gemini_is_configured() {
        let aws = [
            ("TREVEN_ENV", "dev"),
            (
                "TREVEN_MESH_CA_SEED",
                "0123456789abcdefghijklmnopqrstuvwxyz",
            ),
            (
                "TREVEN_TENANTS_URL",
                "https://tenants.treven.internal:50051",
            ),
            (
                "TREVEN_DOCUMENTS_URL",
                "https://documents.treven.internal:50052",
            ),
            (
                "TREVEN_REPORTS_URL",
                "https://reports.treven.internal:50053",
            ),
        ];
        let error = AgentsConfig::from_env(&Env::from_pairs(
            aws.into_iter()
                .chain([("TREVEN_REDIS_URL", "redis://redis.example:6379")]),
        ))
        .unwrap_err();
        assert_eq!(error.variable, "TREVEN_REDIS_URL", "plaintext Redis in AWS");
        let alone = AgentsConfig::from_env(&Env::from_pairs(aws)).unwrap();
        assert_eq!(alone.primary, ProviderKind::Bedrock);
        assert_eq!(alone.secondary, None, "no Gemini configured: Bedrock alone");
        let error = AgentsConfig::from_env(&Env::from_pairs(
            aws.into_iter()
                .chain([("TREVEN_MODEL_SECONDARY", "gemini")]),
        ))
        .unwrap_err();
        assert_eq!(
            error.variable, "TREVEN_GEMINI_PROJECT",
            "gemini chosen, not configured"
        );
        let error = AgentsConfig::from_env(&Env::from_pairs(
            aws.into_iter()
                .filter(|(name, _)| *name != "TREVEN_REPORTS_URL"),
        ))
        .unwrap_err();
        assert_eq!(
            error.variable, "TREVEN_REPORTS_URL",
            "no loopback default in AWS"
        );
        let config = AgentsConfig::from_env(&Env::from_pairs(aws.into_iter().chain([
            ("TREVEN_GEMINI_PROJECT", "p"),
            ("TREVEN_GEMINI_API_KEY", "k"),
        ])))
        .unwrap();
        assert_eq!(config.primary, ProviderKind::Bedrock);
        assert_eq!(config.secondary, Some(ProviderKind::Gemini));
        assert_eq!(config.table, "treven-agents-dev");
        assert_eq!(config.listen.to_string(), "0.0.0.0:50054");
        let gemini = config.gemini.unwrap();
        assert_eq!(
            gemini.endpoint,
            "https://europe-west2-aiplatform.googleapis.com"
        );
        assert!(
            !format!("{gemini:?}").contains("credential"),
            "secrets stay out of logs"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("TREVEN_MODEL_PRIMARY", "openai"),
            ("TREVEN_MAX_MESSAGE_CHARS", "0"),
            ("TREVEN_BREAKER_FAILURES", "0"),
            ("TREVEN_MAX_TOOL_TURNS", "50"),
        ] {
            let error = AgentsConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(error.variable, name);
        }
        let error = AgentsConfig::from_env(&Env::from_pairs([
            ("TREVEN_MODEL_PRIMARY", "offline"),
            ("TREVEN_MODEL_SECONDARY", "offline"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "TREVEN_MODEL_SECONDARY");
    }
}
