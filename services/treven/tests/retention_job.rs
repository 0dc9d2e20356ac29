//! `treven admin retention` end to end: the real binary against moto (S3,
//! DynamoDB), a fresh Postgres database and the tenants service (the audit
//! log), erasing an organisation's expired upload and message body per its
//! settings, recording the run, and changing nothing when run again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use treven_agents::model::{Conversation, ConversationContext, Message, MessageRole};
use treven_documents::model::{Document, DocumentStatus, FileName, Sha256Hex};
use treven_documents::store::blobs::BlobStore;
use treven_documents::store::meta::{DocumentRecord, MetaStore};
use treven_mesh::config::Env;
use treven_mesh::context::attach_context;
use treven_mesh::keys::MeshKeys;
use treven_mesh::wire::{json_to_struct, struct_to_json};
use treven_mesh::{CancellationToken, OrgId, Principal, Role};
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use treven_testkit::{Moto, TestDatabase};
use uuid::Uuid;

const BUCKET: &str = "treven-data-retention";
const DOCS_TABLE: &str = "treven-documents-retention";
const AGENTS_TABLE: &str = "treven-agents-retention";

fn id_at(time: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(time.timestamp()).unwrap(),
        time.timestamp_subsec_nanos(),
    ))
}

fn request<T>(keys: &MeshKeys, org: OrgId, message: T) -> tonic::Request<T> {
    let token = keys.signer(Principal::Gateway).unwrap().mint(
        Principal::Tenants,
        org,
        "admin-1",
        &[Role::Admin],
        "req",
        Duration::from_secs(300),
    );
    let mut request = tonic::Request::new(message);
    attach_context(&mut request, &token).unwrap();
    request
}

// Multi-threaded: the in-process tenants keeps serving while the test
// thread waits for the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_command_erases_what_expired_and_audits_each_run() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let db = TestDatabase::create("treven_retention_test").await;
    let keys = MeshKeys::generate();

    // Tenants on a fresh database, in-process: the audit log.
    let tenants_config = treven_tenants::TenantsConfig::from_env(&Env::from_pairs([(
        "TREVEN_TENANTS_DATABASE_URL",
        db.url.clone(),
    )]))
    .unwrap();
    let store = treven_tenants::store::PgStore::connect_lazy(
        tenants_config.database.clone(),
        &tenants_config.pool,
    );
    store.migrate().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tenants_address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let service = treven_mesh::server::GrpcService {
        name: "tenants",
        routes: treven_tenants::routes(store.clone(), &keys).unwrap(),
        health_names: vec!["treven.tenants.v1.TenantsService"],
    };
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            treven_mesh::server::serve(service, listener, shutdown, tenants_config.shutdown).await
        }
    });
    let channel = Channel::from_shared(format!("http://{tenants_address}"))
        .unwrap()
        .connect_lazy();
    let mut client = TenantsServiceClient::new(channel);

    use treven_tenants::model::{Name, OrgKind};
    let org = store
        .admin_ensure_org(
            &Name::parse("n", "retention job org").unwrap(),
            OrgKind::Ngo,
        )
        .await
        .unwrap()
        .id;
    let keeper = store
        .admin_ensure_org(
            &Name::parse("n", "retention job keeper").unwrap(),
            OrgKind::Ngo,
        )
        .await
        .unwrap()
        .id;
    client
        .update_organisation(request(
            &keys,
            org,
            tenants::UpdateOrganisationRequest {
                organisation: Some(tenants::Organisation {
                    settings: Some(json_to_struct(&serde_json::json!({
                        "retention": {"uploads_days": 30, "message_bodies_days": 60}
                    }))),
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap();

    // The stores, with one expired upload and message in each organisation.
    let docs_config = treven_documents::DocumentsConfig::from_env(&Env::from_pairs([
        ("TREVEN_DATA_BUCKET", BUCKET),
        ("TREVEN_DOCUMENTS_TABLE", DOCS_TABLE),
        ("TREVEN_S3_FORCE_PATH_STYLE", "true"),
    ]))
    .unwrap();
    treven_documents::provision::create_bucket_and_table(&sdk, &docs_config)
        .await
        .unwrap();
    treven_agents::provision::create_table(&sdk, AGENTS_TABLE)
        .await
        .unwrap();
    let meta = MetaStore::new(aws_sdk_dynamodb::Client::new(&sdk), DOCS_TABLE.into());
    let blobs = BlobStore::new(
        treven_documents::s3_client(&docs_config, &sdk),
        BUCKET.into(),
    );
    let messages =
        treven_agents::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), AGENTS_TABLE.into());
    let old = Utc::now() - TimeDelta::days(100);
    let mut seeded = Vec::new();
    for owner in [org, keeper] {
        let id = id_at(old);
        let file_name = FileName::parse("f", "notes.txt").unwrap();
        let key = treven_documents::aws::keys::upload(owner, id, &file_name);
        let version = blobs
            .put(&key, b"old notes".to_vec(), "text/plain")
            .await
            .unwrap();
        meta.create_document(&DocumentRecord {
            document: Document {
                id,
                org_id: owner,
                file_name,
                content_type: "text/plain".into(),
                size_bytes: 9,
                sha256: Sha256Hex::of(b"old notes"),
                status: DocumentStatus::Pending,
                rejection_reason: String::new(),
                version_id: String::new(),
                created_by: "user-1".into(),
                created_at: old,
                updated_at: old,
                erased_at: None,
            },
            s3_key: key,
        })
        .await
        .unwrap();
        meta.transition(
            owner,
            id,
            DocumentStatus::Pending,
            DocumentStatus::Available,
            "",
            &version,
        )
        .await
        .unwrap();
        let conversation = Conversation {
            id: id_at(old),
            org_id: owner,
            title: "t".into(),
            context: ConversationContext::default(),
            created_by: "user-1".into(),
            created_at: old,
            updated_at: old,
        };
        messages.create_conversation(&conversation).await.unwrap();
        let message = Message {
            id: id_at(old),
            conversation_id: conversation.id,
            role: MessageRole::User,
            content: "an old question".into(),
            tool_calls: Vec::new(),
            citations: Vec::new(),
            model_id: String::new(),
            usage: None,
            cost_nanos: 0,
            created_at: old,
            erased_at: None,
        };
        messages.put_message(owner, &message).await.unwrap();
        seeded.push((owner, id, conversation.id));
    }

    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_treven"));
        command
            .args(["admin", "retention", "--all"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TREVEN_ENV", "local")
            .env("TREVEN_TENANTS_DATABASE_URL", &db.url)
            .env("TREVEN_TENANTS_URL", format!("http://{tenants_address}"))
            .env("TREVEN_DATA_BUCKET", BUCKET)
            .env("TREVEN_DOCUMENTS_TABLE", DOCS_TABLE)
            .env("TREVEN_AGENTS_TABLE", AGENTS_TABLE)
            .env("TREVEN_S3_FORCE_PATH_STYLE", "true")
            .envs(keys.env())
            .envs(moto.aws_env());
        let output = command.output().expect("treven runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line.get("org_id").is_some() && line.get("message").is_none())
            .collect::<Vec<_>>()
    };
    let line_of = |lines: &[serde_json::Value], org: OrgId| {
        lines
            .iter()
            .find(|l| l["org_id"] == org.to_string())
            .cloned()
            .unwrap()
    };

    let first = run();
    let ours = line_of(&first, org);
    assert_eq!(ours["documents_erased"], 1, "{first:?}");
    assert_eq!(ours["versions_deleted"], 1);
    assert_eq!(ours["messages_erased"], 1);
    assert_eq!(ours["uploads_complete"], true);
    assert_eq!(line_of(&first, keeper)["retention"], "unset");

    let (_, doc, conversation) = seeded[0];
    let erased = meta.document(org, doc).await.unwrap().unwrap();
    assert_eq!(erased.document.status, DocumentStatus::Erased);
    let (stored, _) = messages
        .list_messages(org, conversation, 10, None)
        .await
        .unwrap();
    assert!(stored[0].erased_at.is_some());
    let (keeper_org, keeper_doc, keeper_conversation) = seeded[1];
    let kept = meta
        .document(keeper_org, keeper_doc)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.document.status, DocumentStatus::Available);
    let (kept_messages, _) = messages
        .list_messages(keeper_org, keeper_conversation, 10, None)
        .await
        .unwrap();
    assert_eq!(kept_messages[0].content, "an old question");

    // Again: nothing left to erase; the run is on record twice.
    let second = run();
    let ours = line_of(&second, org);
    assert_eq!(ours["documents_erased"], 0);
    assert_eq!(ours["messages_erased"], 0);
    let entries = client
        .list_audit_events(request(
            &keys,
            org,
            tenants::ListAuditEventsRequest {
                limit: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .items;
    let count = |action: &str| entries.iter().filter(|e| e.action == action).count();
    assert_eq!(count("retention.run"), 2, "{entries:?}");
    assert_eq!(count("document.erase"), 1);
    assert_eq!(count("conversation.messages_erased"), 1);
    let run_entry = entries
        .iter()
        .find(|e| e.action == "retention.run")
        .unwrap();
    assert_eq!(run_entry.actor_id, "treven-retention");
    assert_eq!(run_entry.resource_id, org.to_string());
    let details = struct_to_json(run_entry.details.as_ref().unwrap());
    assert_eq!(details["uploads_days"], 30.0);

    shutdown.cancel();
    store.pool().close().await;
    db.drop().await;
}
