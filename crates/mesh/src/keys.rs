//! Where the mesh keys come from.
//!
//! - `TREVEN_MESH_SIGNING_KEYS`: the keys this process signs with, as
//!   `principal:base64 seed` entries, comma-separated: one in AWS (the
//!   task's own principal), one per role when a developer runs several roles
//!   in one process. Or `TREVEN_MESH_SIGNING_KEY_SECRET_ID`: a Secrets
//!   Manager secret holding that same text (what AWS tasks use; each task
//!   can read only its own principal's secret).
//! - `TREVEN_MESH_PUBLIC_KEYS`: every principal's public key as
//!   `principal:base64 public key` entries; a principal listed twice has
//!   both keys accepted (its previous key while rotating). Required outside
//!   `TREVEN_ENV=local`; locally it defaults to the public halves of the
//!   signing keys given.
//!
//! `treven keygen` prints a complete set for a local run.

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::config::{ConfigError, Env, Environment};
use crate::context::{ContextVerifier, KeySet, MeshKey, Principal, Signer, parse_entries};

/// The keys of one process: the principals it signs as, and every
/// principal's public key.
#[derive(Debug, Clone)]
pub struct MeshKeys {
    signers: BTreeMap<Principal, Signer>,
    public: KeySet,
}

impl MeshKeys {
    /// A fresh key for every principal, each public key in the set (for
    /// `treven keygen`, dev stacks and tests).
    pub fn generate() -> Self {
        let signers = Principal::ALL
            .into_iter()
            .map(|principal| (principal, Signer::new(principal, MeshKey::generate())))
            .collect::<BTreeMap<_, _>>();
        let mut public = KeySet::default();
        for signer in signers.values() {
            public.insert_signer(signer);
        }
        Self { signers, public }
    }

    /// These keys with only `principals`' signing keys kept (the public set
    /// unchanged): what one task of that principal holds.
    pub fn only(&self, principals: &[Principal]) -> Self {
        Self {
            signers: self
                .signers
                .iter()
                .filter(|(principal, _)| principals.contains(principal))
                .map(|(principal, signer)| (*principal, signer.clone()))
                .collect(),
            public: self.public.clone(),
        }
    }

    /// The signer of `principal`, if this process holds its key.
    pub fn signer(&self, principal: Principal) -> Option<&Signer> {
        self.signers.get(&principal)
    }

    /// The signer of `principal`, or an error naming the variable to set.
    pub fn require_signer(&self, principal: Principal) -> anyhow::Result<Signer> {
        self.signer(principal).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "TREVEN_MESH_SIGNING_KEYS: no signing key for {principal} (an entry \
                 `{principal}:<base64 seed>`, or TREVEN_MESH_SIGNING_KEY_SECRET_ID naming its secret)"
            )
        })
    }

    /// A verifier for tokens minted for `audience`.
    pub fn verifier(&self, audience: Principal) -> ContextVerifier {
        self.public.verifier(audience)
    }

    /// The public key set.
    pub fn public(&self) -> &KeySet {
        &self.public
    }

    /// `TREVEN_MESH_SIGNING_KEYS` for these signing keys (secret!).
    pub fn signing_list(&self) -> String {
        self.signers
            .values()
            .map(|signer| format!("{}:{}", signer.principal(), signer.key().to_base64()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The two variables that configure a process with these keys.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("TREVEN_MESH_SIGNING_KEYS", self.signing_list()),
            ("TREVEN_MESH_PUBLIC_KEYS", self.public.to_list()),
        ]
    }
}

/// Parses `principal:base64 seed` entries.
fn parse_signers(list: &str) -> Result<BTreeMap<Principal, Signer>, String> {
    let mut signers = BTreeMap::new();
    for (principal, seed) in parse_entries(list)? {
        let key = MeshKey::from_base64(seed).map_err(|e| format!("{principal}: {e}"))?;
        if signers
            .insert(principal, Signer::new(principal, key))
            .is_some()
        {
            return Err(format!("{principal} is listed twice"));
        }
    }
    Ok(signers)
}

/// Where to read the signing keys from, and the public keys.
#[derive(Debug, Clone)]
pub struct MeshKeySource {
    signing: Signing,
    public: Option<KeySet>,
}

#[derive(Debug, Clone)]
enum Signing {
    Inline(BTreeMap<Principal, Signer>),
    SecretsManager(String),
}

impl MeshKeySource {
    /// Reads the variables above; a signing source is required, and the
    /// public keys outside `TREVEN_ENV=local`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let signing = if let Some(list) = env.get("TREVEN_MESH_SIGNING_KEYS") {
            Signing::Inline(
                parse_signers(&list).map_err(|e| env.error("TREVEN_MESH_SIGNING_KEYS", e))?,
            )
        } else if let Some(id) = env.get("TREVEN_MESH_SIGNING_KEY_SECRET_ID") {
            Signing::SecretsManager(id)
        } else {
            return Err(env.error(
                "TREVEN_MESH_SIGNING_KEYS",
                "is required (or TREVEN_MESH_SIGNING_KEY_SECRET_ID naming a Secrets Manager secret); make a local set with `treven keygen`",
            ));
        };
        let public = env
            .get("TREVEN_MESH_PUBLIC_KEYS")
            .map(|list| KeySet::parse(&list).map_err(|e| env.error("TREVEN_MESH_PUBLIC_KEYS", e)))
            .transpose()?;
        if public.is_none() && environment != Environment::Local {
            return Err(env.error(
                "TREVEN_MESH_PUBLIC_KEYS",
                "is required outside TREVEN_ENV=local (every principal's public key)",
            ));
        }
        Ok(Self { signing, public })
    }

    /// Loads the keys, calling Secrets Manager when configured to.
    pub async fn load(self) -> anyhow::Result<MeshKeys> {
        let signers = match self.signing {
            Signing::Inline(signers) => signers,
            Signing::SecretsManager(secret_id) => {
                // AWSPREVIOUS is not used: a process signs with its current
                // key only; verifiers learn the previous one from the public
                // list.
                let (current, _) = secret_strings(&secret_id).await.with_context(|| {
                    format!("TREVEN_MESH_SIGNING_KEY_SECRET_ID: cannot read secret {secret_id}")
                })?;
                let signers = parse_signers(&current).map_err(|e| {
                    anyhow::anyhow!("TREVEN_MESH_SIGNING_KEY_SECRET_ID: secret {secret_id}: {e}")
                })?;
                let principals: Vec<&str> = signers.keys().map(|p| p.as_str()).collect();
                tracing::info!(
                    secret_id,
                    ?principals,
                    "mesh signing key loaded from secrets manager"
                );
                signers
            }
        };
        let public = match self.public {
            Some(public) => public,
            None => {
                let mut public = KeySet::default();
                for signer in signers.values() {
                    public.insert_signer(signer);
                }
                public
            }
        };
        Ok(MeshKeys { signers, public })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_generated_set_configures_a_process_through_its_variables() {
        let keys = MeshKeys::generate();
        let env = Env::from_pairs(keys.only(&[Principal::Reports]).env());
        let loaded = MeshKeySource::from_env(&env)
            .expect("valid")
            .load()
            .await
            .expect("loads");
        assert!(loaded.signer(Principal::Reports).is_some());
        assert!(loaded.signer(Principal::Gateway).is_none());
        let error = loaded
            .require_signer(Principal::Gateway)
            .expect_err("missing");
        assert!(error.to_string().starts_with("TREVEN_MESH_SIGNING_KEYS"));
        assert_eq!(loaded.public(), keys.public());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[], "TREVEN_MESH_SIGNING_KEYS"),
            (
                &[("TREVEN_MESH_SIGNING_KEYS", "reports:c2hvcnQ=")],
                "TREVEN_MESH_SIGNING_KEYS",
            ),
            (
                &[
                    ("TREVEN_ENV", "prod"),
                    ("TREVEN_MESH_SIGNING_KEY_SECRET_ID", "arn:x"),
                ],
                "TREVEN_MESH_PUBLIC_KEYS",
            ),
            (
                &[
                    ("TREVEN_MESH_SIGNING_KEY_SECRET_ID", "arn:x"),
                    ("TREVEN_MESH_PUBLIC_KEYS", "nobody:AAAA"),
                ],
                "TREVEN_MESH_PUBLIC_KEYS",
            ),
        ];
        for (pairs, variable) in cases {
            let env = Env::from_pairs(pairs.iter().copied());
            let error = MeshKeySource::from_env(&env).expect_err("invalid");
            assert_eq!(error.variable, variable, "{pairs:?}");
        }
        let key = MeshKey::generate().to_base64();
        let twice = format!("reports:{key},reports:{key}");
        let env = Env::from_pairs([("TREVEN_MESH_SIGNING_KEYS", twice.as_str())]);
        assert!(
            MeshKeySource::from_env(&env)
                .expect_err("twice")
                .to_string()
                .contains("listed twice")
        );
    }
}
