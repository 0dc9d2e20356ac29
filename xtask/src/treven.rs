//! The `treven` binary as the dev stack runs it: its environment and the
//! admin subcommands xtask calls.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::state::DevState;
use crate::{cmd, paths};

/// Access key handed to the SDK under moto (any value works there).
const MOTO_ACCESS_KEY: &str = "treven-local";

/// The login role the tenants service logs in as (created by `treven migrate`).
pub const TENANTS_LOGIN_ROLE: &str = "treven_tenants_svc";
/// The login role the reports service logs in as (created by `treven migrate`).
pub const REPORTS_LOGIN_ROLE: &str = "treven_reports_svc";
/// The owner `treven migrate` and `treven admin` connect as in the dev stack.
pub const DATABASE_OWNER: &str = "postgres";

/// `url` with its user replaced by `user` (and its password dropped).
pub fn with_user(url: &str, user: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

/// The environment `treven` runs with in the dev stack: the services log in
/// as their own login roles (`tenants_database_url` is the tenants one).
pub fn env(state: &DevState) -> Vec<(&'static str, String)> {
    vec![
        ("TREVEN_ENV", "local".into()),
        ("TREVEN_LOG_FORMAT", "pretty".into()),
        (
            "TREVEN_TENANTS_DATABASE_URL",
            state.tenants_database_url.clone(),
        ),
        // Reports share the dev database (their tables live in the schema
        // `reports`).
        (
            "TREVEN_REPORTS_DATABASE_URL",
            with_user(&state.tenants_database_url, REPORTS_LOGIN_ROLE),
        ),
        ("TREVEN_REDIS_URL", state.redis_url.clone()),
        // The deterministic offline model: the whole product works without
        // AWS. Set TREVEN_MODEL_PRIMARY=bedrock (and credentials) to use Bedrock.
        ("TREVEN_MODEL_PRIMARY", "offline".into()),
        ("TREVEN_MODEL_SECONDARY", "none".into()),
        ("TREVEN_MESH_SIGNING_KEYS", state.mesh_signing_keys.clone()),
        ("TREVEN_MESH_PUBLIC_KEYS", state.mesh_public_keys.clone()),
        ("TREVEN_DATA_BUCKET", state.data_bucket.clone()),
        ("TREVEN_DOCUMENTS_TABLE", state.documents_table.clone()),
        ("TREVEN_AGENTS_TABLE", state.agents_table.clone()),
        ("TREVEN_COGNITO_ISSUER", state.cognito.issuer.clone()),
        ("TREVEN_COGNITO_JWKS_URL", state.cognito.jwks_url.clone()),
        ("TREVEN_COGNITO_CLIENT_ID", state.cognito.client_id.clone()),
        // Tenants invites users into the pool (and disables removed ones).
        (
            "TREVEN_COGNITO_USER_POOL_ID",
            state.cognito.user_pool_id.clone(),
        ),
        ("AWS_ENDPOINT_URL", state.aws_endpoint_url.clone()),
        ("AWS_REGION", state.aws_region.clone()),
        ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// The AWS part of [`env`], for the provisioning script.
pub fn aws_env(endpoint: &str, region: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
        ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// A `treven` command with the dev environment (fails if it is not built).
pub fn command(state: &DevState) -> Result<Command> {
    let mut treven = bare_command()?;
    treven.envs(env(state));
    Ok(treven)
}

/// A `treven` command for `migrate` and `admin`: [`command`] plus the owner
/// (`TREVEN_MIGRATE_DATABASE_USER`).
pub fn owner_command(state: &DevState) -> Result<Command> {
    let mut treven = command(state)?;
    treven.env("TREVEN_MIGRATE_DATABASE_USER", DATABASE_OWNER);
    Ok(treven)
}

/// A `treven` command with no extra environment.
pub fn bare_command() -> Result<Command> {
    let binary = paths::treven_binary();
    if !cmd::is_executable(&binary) {
        bail!(
            "{} is not built: run `cargo xtask dev` (or `cargo build -p treven`) first",
            binary.display()
        );
    }
    Ok(Command::new(binary))
}

/// `treven keygen`: a fresh base64 mesh signing key.
/// A fresh key for every principal (`treven keygen`): the signing list
/// and the public list.
pub fn keygen() -> Result<(String, String)> {
    let printed = cmd::output(bare_command()?.arg("keygen").env("TREVEN_ENV", "local"))
        .context("`treven keygen` failed")?;
    let value = |name: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    match (
        value("TREVEN_MESH_SIGNING_KEYS"),
        value("TREVEN_MESH_PUBLIC_KEYS"),
    ) {
        (Some(signing), Some(public)) => Ok((signing, public)),
        _ => bail!("`treven keygen` printed {printed:?}, not the two key lists"),
    }
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

/// `treven admin ensure-org`: the id of organisation `name`, created if missing.
pub fn ensure_org(state: &DevState, name: &str, kind: &str) -> Result<String> {
    let out = cmd::output(owner_command(state)?.args([
        "admin",
        "ensure-org",
        "--name",
        name,
        "--kind",
        kind,
    ]))
    .with_context(|| format!("cannot ensure organisation {name:?} in tenants"))?;
    parse_id(&out).with_context(|| format!("`treven admin ensure-org` printed {out:?}"))
}

/// A user to ensure in the tenants service.
#[derive(Debug)]
pub struct UserSpec<'a> {
    /// Organisation id.
    pub org_id: &'a str,
    /// E-mail (the idempotency key together with the organisation).
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// admin, analyst or viewer.
    pub role: &'a str,
    /// The user's Cognito `sub`, when it has one.
    pub cognito_sub: Option<&'a str>,
}

/// `treven admin ensure-user`: the tenants id of the user, created if missing.
pub fn ensure_user(state: &DevState, user: &UserSpec<'_>) -> Result<String> {
    let mut treven = owner_command(state)?;
    treven.args([
        "admin",
        "ensure-user",
        "--org-id",
        user.org_id,
        "--email",
        user.email,
        "--name",
        user.name,
        "--role",
        user.role,
    ]);
    if let Some(sub) = user.cognito_sub {
        treven.args(["--cognito-sub", sub]);
    }
    let out = cmd::output(&mut treven)
        .with_context(|| format!("cannot ensure user {} in tenants", user.email))?;
    parse_id(&out).with_context(|| format!("`treven admin ensure-user` printed {out:?}"))
}

/// Reads `{"id": …}` from the last JSON line a command printed.
fn parse_id(out: &str) -> Result<String> {
    let line = out
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with('{'))
        .context("no JSON object in the output")?;
    let created: Created = serde_json::from_str(line).context("not the expected JSON")?;
    Ok(created.id)
}
