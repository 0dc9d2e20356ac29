//! Where the mesh key comes from: `TREVEN_MESH_KEY` (base64 seed, for local
//! runs and tests) or the AWS Secrets Manager secret named by
//! `TREVEN_MESH_KEY_SECRET_ID` (in AWS). `TREVEN_MESH_KEY_PREVIOUS` (or the
//! secret's `AWSPREVIOUS` stage) is also accepted for verification while a
//! key is rotated.

use anyhow::Context as _;

use crate::config::{ConfigError, Env};
use crate::context::{ContextVerifier, MeshKey};

/// The key this process signs with and the verifier it checks with.
#[derive(Debug, Clone)]
pub struct MeshKeys {
    /// Signs tokens minted here and derives cursor keys.
    pub current: MeshKey,
    /// Accepts the current key and, during rotation, the previous one.
    pub verifier: ContextVerifier,
}

/// Where to read the key from.
// Built once at start-up, so the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum MeshKeySource {
    /// Given directly (base64 seeds).
    Inline {
        /// The current key.
        current: MeshKey,
        /// The previous key, while rotating.
        previous: Option<MeshKey>,
    },
    /// An AWS Secrets Manager secret id or ARN whose value is the base64 seed.
    SecretsManager(String),
}

impl MeshKeySource {
    /// Reads the variables above; one of the two sources is required.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let parse = |name: &str| -> Result<Option<MeshKey>, ConfigError> {
            env.get(name)
                .map(|raw| MeshKey::from_base64(&raw).map_err(|e| env.error(name, e)))
                .transpose()
        };
        if let Some(current) = parse("TREVEN_MESH_KEY")? {
            return Ok(MeshKeySource::Inline {
                current,
                previous: parse("TREVEN_MESH_KEY_PREVIOUS")?,
            });
        }
        match env.get("TREVEN_MESH_KEY_SECRET_ID") {
            Some(id) => Ok(MeshKeySource::SecretsManager(id)),
            None => Err(env.error(
                "TREVEN_MESH_KEY",
                "is required (or TREVEN_MESH_KEY_SECRET_ID naming a Secrets Manager secret); make one with `treven keygen`",
            )),
        }
    }

    /// Loads the keys, calling Secrets Manager when configured to.
    pub async fn load(self) -> anyhow::Result<MeshKeys> {
        match self {
            MeshKeySource::Inline { current, previous } => {
                let mut verifier = current.verifier();
                if let Some(previous) = &previous {
                    verifier = verifier.also_accept(previous);
                }
                Ok(MeshKeys { current, verifier })
            }
            MeshKeySource::SecretsManager(secret_id) => load_from_secrets_manager(&secret_id).await,
        }
    }
}

async fn load_from_secrets_manager(secret_id: &str) -> anyhow::Result<MeshKeys> {
    let (current, previous) = secret_strings(secret_id)
        .await
        .with_context(|| format!("TREVEN_MESH_KEY_SECRET_ID: cannot read secret {secret_id}"))?;
    let current = MeshKey::from_base64(&current)
        .map_err(|e| anyhow::anyhow!("TREVEN_MESH_KEY_SECRET_ID: secret {secret_id} {e}"))?;
    let mut verifier = current.verifier();
    if let Some(previous) = previous
        && let Ok(previous) = MeshKey::from_base64(&previous)
    {
        verifier = verifier.also_accept(&previous);
    }
    tracing::info!(secret_id, "mesh key loaded from secrets manager");
    Ok(MeshKeys { current, verifier })
}

/// The `AWSCURRENT` value of a Secrets Manager secret and, when a rotation
/// left one, its `AWSPREVIOUS` value.
pub(crate) async fn secret_strings(secret_id: &str) -> anyhow::Result<(String, Option<String>)> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let fetch = |stage: &'static str| {
        let client = client.clone();
        async move {
            client
                .get_secret_value()
                .secret_id(secret_id)
                .version_stage(stage)
                .send()
                .await
        }
    };
    let current = fetch("AWSCURRENT").await?;
    let current = current.secret_string().unwrap_or_default().to_owned();
    // A rotation leaves the old value under AWSPREVIOUS; absent otherwise.
    let previous = fetch("AWSPREVIOUS")
        .await
        .ok()
        .and_then(|p| p.secret_string().map(str::to_owned));
    Ok((current, previous))
}
