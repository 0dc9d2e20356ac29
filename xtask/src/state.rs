//! `target/dev/state.json`: what `cargo xtask dev` provisioned, read by
//! `cargo xtask token` and by people who want the pool id or the mesh keys.
//!
//! moto keeps nothing once it stops, so the AWS parts are recreated on every
//! `cargo xtask dev`; only the mesh keys and the generated user passwords are
//! carried over from one run to the next.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::paths;

/// The dev stack's state, as written to `target/dev/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DevState {
    /// moto's address, e.g. `http://127.0.0.1:5000` (AWS_ENDPOINT_URL).
    pub aws_endpoint_url: String,
    /// The AWS region every resource was created in.
    pub aws_region: String,
    /// The S3 bucket of the documents service.
    pub data_bucket: String,
    /// The DynamoDB table of the documents service.
    pub documents_table: String,
    /// The DynamoDB table of the agents service.
    pub agents_table: String,
    /// The Cognito user pool and its app client.
    pub cognito: CognitoState,
    /// Name of the Secrets Manager secret holding the signing keys (the
    /// form an AWS task reads with `TREVEN_MESH_SIGNING_KEY_SECRET_ID`).
    #[serde(default)]
    pub mesh_key_secret: String,
    /// Every principal's signing key (`TREVEN_MESH_SIGNING_KEYS`, from
    /// `treven keygen`), kept across runs.
    #[serde(default)]
    pub mesh_signing_keys: String,
    /// Every principal's public key (`TREVEN_MESH_PUBLIC_KEYS`).
    #[serde(default)]
    pub mesh_public_keys: String,
    /// Postgres database of the tenants service: the URL the service logs
    /// in with (its login role, `treven_tenants_svc`; the owner runs
    /// `treven migrate` and `treven admin`).
    pub tenants_database_url: String,
    /// Redis of the mesh.
    pub redis_url: String,
    /// Service name → `host:port` of what is served.
    pub endpoints: BTreeMap<String, String>,
    /// Cognito users created by `cargo xtask token`, by e-mail.
    #[serde(default)]
    pub users: BTreeMap<String, DevUser>,
}

/// The dev Cognito user pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CognitoState {
    /// User pool id, e.g. `eu-west-2_…`.
    pub user_pool_id: String,
    /// App client id (no secret; allows ADMIN_USER_PASSWORD_AUTH and refresh).
    pub client_id: String,
    /// Issuer that tokens carry: `https://cognito-idp.eu-west-2.amazonaws.com/<pool>`.
    pub issuer: String,
    /// Where moto serves the pool's keys.
    pub jwks_url: String,
}

/// A Cognito user of the dev pool and the password xtask gave it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DevUser {
    /// The generated password (set permanent with AdminSetUserPassword).
    pub password: String,
    /// The user's Cognito `sub` the last time a token was issued.
    #[serde(default)]
    pub sub: String,
    /// The organisation id in `custom:orgId`.
    #[serde(default)]
    pub org_id: String,
}

/// Path of the state file.
pub fn path() -> PathBuf {
    paths::dev_dir().join("state.json")
}

/// Reads the state file, `None` when there is none yet.
pub fn load() -> Result<Option<DevState>> {
    let path = path();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let state = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not valid state: delete it and rerun `cargo xtask dev`",
            path.display()
        )
    })?;
    Ok(Some(state))
}

/// Writes the state file atomically (write then rename), mode 0600 since it
/// holds the mesh key and passwords.
pub fn save(state: &DevState) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = path();
    let dir = paths::dev_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(".state.json.tmp");
    let text = serde_json::to_string_pretty(state).context("cannot serialise the dev state")?;
    fs::write(&temp, text + "\n").with_context(|| format!("cannot write {}", temp.display()))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", temp.display()))?;
    fs::rename(&temp, &path).with_context(|| format!("cannot replace {}", path.display()))
}
