//! `treven admin retention`: the retention job. For each organisation (one,
//! or every one) it reads `retention` from its settings (as the operator,
//! like `ensure-org`: `TREVEN_MIGRATE_DATABASE_*` over
//! `TREVEN_TENANTS_DATABASE_URL`) and, where a period is set:
//!
//! - erases the bytes of uploads registered more than `uploads_days` ago
//!   (documents' bucket and table: `TREVEN_DATA_BUCKET`,
//!   `TREVEN_DOCUMENTS_TABLE`), each audited as `document.erase`;
//! - erases the bodies of messages written more than `message_bodies_days`
//!   ago (`TREVEN_AGENTS_TABLE`), audited per conversation as
//!   `conversation.messages_erased`;
//! - records one `retention.run` entry on the organisation with the
//!   cutoffs and counts.
//!
//! It acts as the operator (`TREVEN_MESH_SIGNING_KEYS` or
//! `TREVEN_MESH_SIGNING_KEY_SECRET_ID` with the operator key) in each
//! organisation, for the user `treven-retention`, and writes the audit log
//! through tenants (`TREVEN_TENANTS_URL`). Every step is idempotent, so a
//! run that stopped halfway is completed by the next; `--limit` bounds what
//! one run erases per organisation and kind. One JSON line per organisation
//! goes to stdout; the exit status is non-zero when any organisation
//! failed (the others still ran).

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use treven_agents::app::{AuditLog as AgentsAuditLog, MessageRetention};
use treven_documents::DocumentsConfig;
use treven_documents::app::{AuditEntry, Documents};
use treven_mesh::client::ChannelOptions;
use treven_mesh::config::{Env, Environment};
use treven_mesh::discovery::upstream;
use treven_mesh::keys::MeshKeySource;
use treven_mesh::{MeshContext, OrgId, Principal, Role};
use treven_tenants::model::{Organisation, RetentionSettings};
use uuid::Uuid;

/// The user the job acts for in the audit log.
pub const RETENTION_ACTOR: &str = "treven-retention";
/// The audit action of one organisation's run.
pub const RUN_ACTION: &str = "retention.run";
/// Most passes over one kind of data in one organisation per run (each
/// pass reads at most 1,000 items).
const MAX_PASSES: usize = 10_000;

/// What to run on.
#[derive(Debug, clap::Args)]
pub struct RetentionArgs {
    /// One organisation.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    org_id: Option<OrgId>,
    /// Every organisation.
    #[arg(long)]
    all: bool,
    /// Most uploads, and most message bodies, erased per organisation in
    /// this run (1–100000); the rest waits for the next run.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
}

/// What one organisation's run did.
#[derive(Debug, Default)]
struct OrgRun {
    documents: u64,
    versions: u64,
    uploads_complete: bool,
    messages: u64,
    conversations: u64,
    messages_complete: bool,
}

/// Runs the job (see the module's documentation).
pub async fn run(env: &Env, args: RetentionArgs) -> anyhow::Result<()> {
    let telemetry = treven_mesh::telemetry::init(
        &treven_mesh::telemetry::TelemetryConfig::from_env(env)?,
        "treven-retention",
    )?;
    let result = run_inner(env, args).await;
    telemetry.shutdown();
    result
}

async fn run_inner(env: &Env, args: RetentionArgs) -> anyhow::Result<()> {
    let only = if args.all { None } else { args.org_id };
    let owner = treven_tenants::owner_config(env)?;
    let organisations = treven_tenants::owner_store(&owner)
        .admin_organisations(only)
        .await
        .context("read organisations (as the operator)")?;
    if let Some(org) = only
        && organisations.is_empty()
    {
        anyhow::bail!("--org-id: there is no organisation {org}");
    }
    treven_mesh::tls::install(
        treven_mesh::tls::MeshTlsSource::from_env(env, false)?
            .load()
            .await?,
    );
    treven_mesh::tls::install_trust_roots(treven_mesh::tls::TrustRoots::from_env(env)?);
    let keys = MeshKeySource::from_env(env)?.load().await?;
    let signer = keys.require_signer(Principal::Operator)?;
    let sdk = crate::serve::aws_sdk().await;
    let documents_config = DocumentsConfig::from_env(env)?;
    let tenants_url = documents_config.tenants_url.clone();
    let documents = treven_documents::build_for_retention(documents_config, &sdk, signer.clone())?;
    let environment = Environment::from_env(env)?;
    let agents_table = env
        .get("TREVEN_AGENTS_TABLE")
        .unwrap_or_else(|| format!("treven-agents-{}", environment.as_str()));
    let channel = upstream(
        "TREVEN_TENANTS_URL",
        &tenants_url,
        ChannelOptions::default(),
    )
    .context("TREVEN_TENANTS_URL")?;
    let messages = MessageRetention::new(
        treven_agents::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), agents_table),
        AgentsAuditLog::new(channel, signer.clone()),
    );

    let run_id = Uuid::now_v7();
    let now = Utc::now();
    tracing::info!(%run_id, organisations = organisations.len(), "retention run started");
    let mut failed = 0;
    for organisation in &organisations {
        let context = signer.acting_for(
            organisation.id,
            RETENTION_ACTOR,
            &[Role::Admin],
            &run_id.to_string(),
        );
        let line = match run_org(
            &documents,
            &messages,
            &context,
            organisation,
            now,
            run_id,
            args.limit,
        )
        .await
        {
            Ok(line) => line,
            Err(error) => {
                failed += 1;
                tracing::error!(org = %organisation.id, error = %format!("{error:#}"), "retention failed for the organisation");
                json!({ "org_id": organisation.id, "error": format!("{error:#}") })
            }
        };
        println!("{line}");
    }
    tracing::info!(%run_id, failed, "retention run finished");
    if failed > 0 {
        anyhow::bail!("retention failed for {failed} organisation(s); rerun to complete");
    }
    Ok(())
}

/// One organisation: both erasures, then its `retention.run` entry (also
/// when an erasure failed, with the error, so the attempt is on record).
async fn run_org(
    documents: &Documents,
    messages: &MessageRetention,
    context: &MeshContext,
    organisation: &Organisation,
    now: DateTime<Utc>,
    run_id: Uuid,
    limit: u32,
) -> anyhow::Result<serde_json::Value> {
    let org = organisation.id;
    let settings = RetentionSettings::parse("settings", &organisation.settings)
        .map_err(|e| anyhow::anyhow!("the organisation's {}", e.message()))?;
    if settings.keeps_everything() {
        tracing::info!(%org, "retention: nothing to erase (no retention set)");
        return Ok(json!({ "org_id": org, "retention": "unset" }));
    }
    let cutoff = |days: Option<u32>| days.map(|d| now - TimeDelta::days(i64::from(d)));
    let uploads_cutoff = cutoff(settings.uploads_days);
    let messages_cutoff = cutoff(settings.message_bodies_days);
    let limit = limit as usize;
    let mut done = OrgRun::default();
    let outcome: anyhow::Result<()> = async {
        if let Some(cutoff) = uploads_cutoff {
            let mut after = None;
            for _ in 0..MAX_PASSES {
                let remaining = limit.saturating_sub(done.documents as usize);
                if remaining == 0 {
                    break;
                }
                let pass = documents
                    .erase_expired_uploads(context, cutoff, after, remaining)
                    .await
                    .map_err(|e| anyhow::anyhow!("erasing uploads: {}", e.message()))?;
                done.documents += pass.documents;
                done.versions += pass.versions;
                tracing::info!(%org, documents = done.documents, versions = done.versions, "retention: uploads progress");
                after = pass.next;
                if after.is_none() {
                    done.uploads_complete = true;
                    break;
                }
            }
        }
        if let Some(cutoff) = messages_cutoff {
            let mut after = None;
            for _ in 0..MAX_PASSES {
                let remaining = limit.saturating_sub(done.messages as usize);
                if remaining == 0 {
                    break;
                }
                let pass = messages
                    .erase_expired_message_bodies(context, cutoff, after, remaining)
                    .await
                    .map_err(|e| anyhow::anyhow!("erasing message bodies: {}", e.message()))?;
                done.messages += pass.messages;
                done.conversations += pass.conversations;
                tracing::info!(%org, messages = done.messages, "retention: message bodies progress");
                after = pass.next;
                if after.is_none() {
                    done.messages_complete = true;
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    let summary = json!({
        "run_id": run_id,
        "uploads_days": settings.uploads_days,
        "message_bodies_days": settings.message_bodies_days,
        "uploads_cutoff": uploads_cutoff,
        "messages_cutoff": messages_cutoff,
        "documents_erased": done.documents,
        "versions_deleted": done.versions,
        "uploads_complete": uploads_cutoff.is_none() || done.uploads_complete,
        "messages_erased": done.messages,
        "conversations": done.conversations,
        "messages_complete": messages_cutoff.is_none() || done.messages_complete,
        "error": outcome.as_ref().err().map(|e| format!("{e:#}")),
    });
    let audit = documents
        .audit_log()
        .context("the retention job's audit log")?;
    audit
        .record_with(
            context,
            AuditEntry {
                action: RUN_ACTION,
                resource_type: "organisation",
                resource_id: org.to_string(),
                details: summary.clone(),
            },
            treven_mesh::audit::derived_event_id(&[
                RUN_ACTION,
                &org.to_string(),
                &run_id.to_string(),
            ]),
            treven_mesh::audit::RECORD_ATTEMPTS,
        )
        .await
        .map_err(|e| anyhow::anyhow!("recording the run in the audit log: {}", e.message()))?;
    outcome?;
    let mut line = summary;
    line["org_id"] = json!(org);
    Ok(line)
}
