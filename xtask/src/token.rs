//! `cargo xtask token`: a real Cognito ID token from the running dev stack.
//!
//! Ensures the organisation in tenants (by name), the Cognito user in the dev
//! pool (e-mail verified, `custom:orgId` = the organisation's id, a generated
//! permanent password kept in target/dev/state.json, in the role's group),
//! the tenants user with the Cognito `sub`, signs in with
//! ADMIN_USER_PASSWORD_AUTH and prints the **ID token** — the one the gateway
//! takes, since only it carries `custom:orgId` — and nothing else on stdout.

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::state::{self, DevState, DevUser};
use crate::tools::Tools;
use crate::{cmd, paths, services, treven};

/// The role of the user in its organisation (also its Cognito group).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    /// Manages users and partners.
    Admin,
    /// Writes reports.
    Analyst,
    /// Reads.
    Viewer,
}

impl Role {
    /// The role's name in tenants and Cognito.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Analyst => "analyst",
            Self::Viewer => "viewer",
        }
    }
}

/// The kind of organisation created when `--org` does not exist yet.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OrgKind {
    /// Financial institution.
    Fi,
    /// Non-governmental organisation.
    Ngo,
    /// Law enforcement.
    Le,
    /// The platform owner.
    Owner,
}

impl OrgKind {
    /// The kind's name in tenants.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fi => "fi",
            Self::Ngo => "ngo",
            Self::Le => "le",
            Self::Owner => "owner",
        }
    }
}

/// Options of `cargo xtask token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// E-mail of the user (its Cognito username).
    #[arg(long)]
    pub email: String,
    /// Name of the organisation (created if missing).
    #[arg(long)]
    pub org: String,
    /// Role of the user.
    #[arg(long, value_enum, default_value_t = Role::Analyst)]
    pub role: Role,
    /// Display name of the user (default: the e-mail's local part).
    #[arg(long)]
    pub name: Option<String>,
    /// Kind of the organisation if it has to be created.
    #[arg(long, value_enum, default_value_t = OrgKind::Ngo)]
    pub kind: OrgKind,
}

/// What `dev_aws.py user` prints.
#[derive(Debug, Deserialize)]
struct SignedIn {
    sub: String,
    password: String,
    id_token: String,
}

/// A user to create (if needed) and sign in, in Cognito and tenants.
#[derive(Debug)]
pub struct UserRequest<'a> {
    /// Organisation name (created with `kind` if missing).
    pub org: &'a str,
    /// Kind of the organisation.
    pub kind: &'a str,
    /// E-mail, the Cognito username.
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// admin, analyst or viewer.
    pub role: &'a str,
}

/// The outcome of [`sign_in`].
#[derive(Debug)]
pub struct SignedInUser {
    /// Organisation id (`custom:orgId`).
    pub org_id: String,
    /// Tenants user id.
    pub user_id: String,
    /// Cognito `sub`, the user id that mesh context tokens carry.
    pub sub: String,
    /// The Cognito ID token.
    pub id_token: String,
}

/// Prints an ID token for the user (see the module docs).
pub fn run(args: &TokenArgs) -> Result<()> {
    let Some(dev) = state::load()? else {
        bail!(
            "no dev stack state at {}: start `cargo xtask dev` first",
            state::path().display()
        );
    };
    let moto_addr = dev
        .aws_endpoint_url
        .trim_start_matches("http://")
        .to_owned();
    if !services::answers(&moto_addr) {
        bail!(
            "moto does not answer on {moto_addr}: start `cargo xtask dev` (and keep it running) first"
        );
    }
    if !services::answers(services::POSTGRES_ADDR) {
        bail!(
            "Postgres does not answer on {}: start `cargo xtask dev` first",
            services::POSTGRES_ADDR
        );
    }
    let tools = Tools::locate()?;
    tools.ensure()?;

    let email = args.email.trim();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
    let request = UserRequest {
        org: &args.org,
        kind: args.kind.as_str(),
        email,
        name: &name,
        role: args.role.as_str(),
    };
    let user = sign_in(&dev, &tools, &request)?;
    say!(
        "ID token for {email} (org {:?} {}, role {}, tenants user {}, sub {}); \
         send it to the gateway as `Authorization: Bearer <token>`",
        request.org,
        user.org_id,
        request.role,
        user.user_id,
        user.sub
    );
    println!("{}", user.id_token);
    Ok(())
}

/// Ensures the organisation, the Cognito user (password kept in the state
/// file) and the tenants user with the Cognito `sub`, then signs in with
/// ADMIN_USER_PASSWORD_AUTH.
pub fn sign_in(dev: &DevState, tools: &Tools, request: &UserRequest<'_>) -> Result<SignedInUser> {
    let org_id = treven::ensure_org(dev, request.org, request.kind)?;

    let known_password = dev
        .users
        .get(request.email)
        .map(|user| user.password.clone())
        .unwrap_or_default();
    let out = cmd::output(
        Command::new(tools.python())
            .arg(paths::dev_aws_script())
            .arg("user")
            .args(["--pool-id", &dev.cognito.user_pool_id])
            .args(["--client-id", &dev.cognito.client_id])
            .args(["--email", request.email, "--name", request.name])
            .args(["--org-id", &org_id, "--role", request.role])
            .envs(treven::aws_env(&dev.aws_endpoint_url, &dev.aws_region))
            .env("TREVEN_DEV_PASSWORD", known_password),
    )
    .context("cannot create or sign in the Cognito user")?;
    let signed_in: SignedIn =
        serde_json::from_str(out.trim()).with_context(|| format!("dev_aws.py printed {out:?}"))?;

    // Re-read before writing: another xtask may have rewritten the file.
    let mut latest = state::load()?.unwrap_or_else(|| dev.clone());
    latest.users.insert(
        request.email.to_owned(),
        DevUser {
            password: signed_in.password,
            sub: signed_in.sub.clone(),
            org_id: org_id.clone(),
        },
    );
    state::save(&latest)?;

    let user = treven::UserSpec {
        org_id: &org_id,
        email: request.email,
        name: request.name,
        role: request.role,
        cognito_sub: Some(&signed_in.sub),
    };
    let user_id = treven::ensure_user(dev, &user)?;
    Ok(SignedInUser {
        org_id,
        user_id,
        sub: signed_in.sub,
        id_token: signed_in.id_token,
    })
}
