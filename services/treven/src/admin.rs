//! `treven admin`: operator commands. They run as the database owner (not
//! through row-level security) and print JSON on stdout for scripts such as
//! `cargo xtask token`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use treven_mesh::config::Env;
use treven_mesh::keys::MeshKeySource;
use treven_mesh::{OrgId, Role};
use treven_tenants::TenantsConfig;
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
    /// Print a mesh context token (for grpcurl and scripts).
    MintContext {
        /// The organisation the call acts in.
        #[arg(long)]
        org_id: OrgId,
        /// The caller's Cognito subject.
        #[arg(long)]
        user_id: String,
        /// Roles (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        role: Vec<Role>,
        /// Lifetime in seconds (at most 3600).
        #[arg(long, default_value_t = 900)]
        ttl_secs: u64,
    },
}

fn store(env: &Env) -> anyhow::Result<PgStore> {
    let config = TenantsConfig::from_env(env)?;
    Ok(PgStore::connect_lazy(config.database, &config.pool))
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
            ttl_secs,
        } => {
            let keys = MeshKeySource::from_env(&env)?.load().await?;
            let request_id = uuid::Uuid::new_v4().to_string();
            println!(
                "{}",
                keys.current.mint(
                    org_id,
                    &user_id,
                    &role,
                    &request_id,
                    Duration::from_secs(ttl_secs)
                )
            );
        }
    }
    Ok(())
}
