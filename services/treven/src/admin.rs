//! `treven admin`: operator commands. The tenants ones connect as the
//! database owner (`TREVEN_MIGRATE_DATABASE_USER` and
//! `TREVEN_MIGRATE_DATABASE_PASSWORD` over `TREVEN_TENANTS_DATABASE_URL`),
//! under forced row-level security like everyone: `ensure-org` looks up and
//! creates organisations as `treven_operator`, `ensure-user` works inside
//! the one organisation as `treven_app`. They print JSON on stdout for
//! scripts such as `cargo xtask token`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use treven_mesh::config::Env;
use treven_mesh::config::Environment;
use treven_mesh::keys::MeshKeySource;
use treven_mesh::{OrgId, Principal, Role};
use treven_tenants::model::{CognitoSub, Email, Name, OrgKind};
use treven_tenants::store::PgStore;

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Find the organisation NAME, creating it if there is none; prints it as JSON.
    EnsureOrg {
        /// Organisation name (unique, case-insensitive).
        #[arg(long)]
        name: String,
        /// fi, ngo, le or owner (used only when creating).
        #[arg(long, default_value = "ngo")]
        kind: OrgKind,
    },
    /// Create or update the user EMAIL of an organisation; prints it as JSON.
    EnsureUser {
        /// The organisation's id.
        #[arg(long)]
        org_id: OrgId,
        /// E-mail address.
        #[arg(long)]
        email: String,
        /// Display name (defaults to the e-mail's local part).
        #[arg(long)]
        name: Option<String>,
        /// admin, analyst or viewer.
        #[arg(long, default_value = "analyst")]
        role: Role,
        /// Cognito subject, when known.
        #[arg(long)]
        cognito_sub: Option<String>,
    },
    /// Print the mesh CA certificate (PEM) derived from TREVEN_MESH_CA_SEED
    /// (or TREVEN_MESH_CA_SEED_SECRET_ID), for `grpcurl -cacert`.
    MeshCaCert,
    /// Print a mesh context token for one service (for grpcurl and
    /// scripts), signed with the operator key (or `--as` another principal
    /// whose key TREVEN_MESH_SIGNING_KEYS holds). Every use is recorded in
    /// the organisation's audit log through tenants (TREVEN_TENANTS_URL)
    /// before the token is printed; refused with TREVEN_ENV=prod unless
    /// --production is given.
    MintContext {
        /// The organisation the call acts in.
        #[arg(long)]
        org_id: OrgId,
        /// The user the call acts for (their Cognito subject).
        #[arg(long)]
        user_id: String,
        /// Roles (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        role: Vec<Role>,
        /// The service the token is for: tenants, documents, reports, agents
        /// or agent-runtime.
        #[arg(long)]
        audience: Principal,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// The principal to sign as.
        #[arg(long = "as", default_value = "operator")]
        issuer: Principal,
        /// Lifetime in seconds (at most 3600).
        #[arg(long, default_value_t = 900)]
        ttl_secs: u64,
        /// Allow minting with TREVEN_ENV=prod (it is still audited).
        #[arg(long)]
        production: bool,
    },
    /// The retention job: erase uploads and message bodies older than each
    /// organisation's `retention` settings, audited (docs/retention.md).
    Retention(crate::retention::RetentionArgs),
}

fn store(env: &Env) -> anyhow::Result<PgStore> {
    let owner = treven_tenants::owner_config(env)?;
    Ok(treven_tenants::owner_store(&owner))
}

fn invalid(error: treven_mesh::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{}", error.message())
}

/// Runs one operator command.
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    let env = Env::from_process();
    match command {
        AdminCommand::MeshCaCert => {
            let tls = treven_mesh::tls::MeshTlsSource::from_env(&env, false)?
                .load()
                .await?
                .ok_or_else(|| anyhow::anyhow!("TREVEN_MESH_CA_SEED: is not set"))?;
            print!("{}", tls.ca_pem());
        }
        AdminCommand::EnsureOrg { name, kind } => {
            let name = Name::parse("name", &name).map_err(invalid)?;
            let org = store(&env)?
                .admin_ensure_org(&name, kind)
                .await
                .context("ensure organisation")?;
            println!(
                "{}",
                serde_json::json!({"id": org.id, "name": org.name, "kind": org.kind.as_str()})
            );
        }
        AdminCommand::EnsureUser {
            org_id,
            email,
            name,
            role,
            cognito_sub,
        } => {
            let email = Email::parse("email", &email).map_err(invalid)?;
            let default_name = email
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned();
            let name =
                Name::parse("name", name.as_deref().unwrap_or(&default_name)).map_err(invalid)?;
            let sub = cognito_sub
                .map(|s| CognitoSub::parse("cognito-sub", &s))
                .transpose()
                .map_err(invalid)?;
            let user = store(&env)?
                .admin_ensure_user(org_id, &email, &name, role, sub.as_ref())
                .await
                .context("ensure user")?;
            println!(
                "{}",
                serde_json::json!({"id": user.id, "org_id": user.org_id, "email": user.email, "role": user.role.as_str(), "cognito_sub": user.cognito_sub})
            );
        }
        AdminCommand::MintContext {
            org_id,
            user_id,
            role,
            audience,
            reason,
            issuer,
            ttl_secs,
            production,
        } => {
            let minted = MintRequest {
                org_id,
                user_id,
                roles: role,
                audience,
                reason,
                issuer,
                ttl: Duration::from_secs(ttl_secs),
                production,
            };
            println!("{}", mint_context(&env, minted).await?);
        }
        AdminCommand::Retention(args) => crate::retention::run(&env, args).await?,
    }
    Ok(())
}

/// What `treven admin mint-context` was asked for.
#[derive(Debug)]
struct MintRequest {
    org_id: OrgId,
    user_id: String,
    roles: Vec<Role>,
    audience: Principal,
    reason: String,
    issuer: Principal,
    ttl: Duration,
    production: bool,
}

/// Mints the token after recording it in the organisation's audit log: no
/// audit entry, no token.
async fn mint_context(env: &Env, request: MintRequest) -> anyhow::Result<String> {
    use treven_proto::treven::tenants::v1 as tenants;
    use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

    if Environment::from_env(env)? == Environment::Prod && !request.production {
        anyhow::bail!(
            "TREVEN_ENV=prod: minting a mesh context in production needs --production (the use is audited)"
        );
    }
    if request.reason.trim().is_empty() {
        anyhow::bail!("--reason: say why (it is recorded in the audit log)");
    }
    let keys = MeshKeySource::from_env(env)?.load().await?;
    let signer = keys.require_signer(request.issuer)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let token = signer.mint(
        request.audience,
        request.org_id,
        &request.user_id,
        &request.roles,
        &request_id,
        request.ttl,
    );
    let token_id = keys
        .verifier(request.audience)
        .verify(&token)
        .map(|context| context.token_id().to_owned())
        .unwrap_or_default();

    // The audit entry, written through tenants as this principal.
    let url =
        treven_mesh::client::service_url(env, "TREVEN_TENANTS_URL", "http://127.0.0.1:50051")?;
    treven_mesh::tls::install(
        treven_mesh::tls::MeshTlsSource::from_env(env, false)?
            .load()
            .await?,
    );
    treven_mesh::tls::install_trust_roots(treven_mesh::tls::TrustRoots::from_env(env)?);
    let channel =
        treven_mesh::client::endpoint(&url, treven_mesh::client::ChannelOptions::default())
            .context("TREVEN_TENANTS_URL")?
            .connect()
            .await
            .with_context(|| {
                format!("TREVEN_TENANTS_URL: cannot reach tenants at {url} to audit the mint")
            })?;
    let operator = std::env::var("USER").unwrap_or_default();
    let details = serde_json::json!({
        "audience": request.audience.as_str(),
        "issuer": request.issuer.as_str(),
        "user_id": request.user_id,
        "roles": request.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "ttl_secs": request.ttl.as_secs(),
        "reason": request.reason,
        "token_id": token_id,
        "operator": operator,
        "environment": Environment::from_env(env)?.as_str(),
    });
    let audit_token = signer.mint(
        Principal::Tenants,
        request.org_id,
        &request.user_id,
        &request.roles,
        &request_id,
        Duration::from_secs(60),
    );
    let mut call = tonic::Request::new(tenants::RecordAuditEventRequest {
        action: "mesh.context_minted".to_owned(),
        resource_type: "mesh_context".to_owned(),
        resource_id: token_id,
        details: Some(treven_mesh::wire::json_to_struct(&details)),
        ..Default::default()
    });
    treven_mesh::context::attach_context(&mut call, &audit_token)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    TenantsServiceClient::new(channel)
        .record_audit_event(call)
        .await
        .map_err(|status| {
            anyhow::anyhow!("tenants refused the audit entry: {}", status.message())
        })?;
    Ok(token)
}
