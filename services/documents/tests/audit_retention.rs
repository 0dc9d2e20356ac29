//! The audit of document views, downloads and deletes (downloads fail
//! closed: no audit entry, no URL), and the retention erasure of expired
//! uploads: against moto (S3, DynamoDB) and the real tenants service on
//! Postgres. Old uploads are written with old ids and times rather than
//! waited for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, TimeDelta, Utc};
use support::{Audited, BUCKET, TABLE, assert_code, authed, upload_file};
use tonic::Code;
use treven_documents::aws::keys;
use treven_documents::model::{Document, DocumentStatus, FileName, Sha256Hex};
use treven_documents::store::meta::{DocumentRecord, MetaStore};
use treven_mesh::wire::struct_to_json;
use treven_mesh::{OrgId, Role};
use treven_proto::treven::documents::v1 as pb;
use uuid::Uuid;

fn actions(entries: &[treven_proto::treven::tenants::v1::AuditEvent]) -> Vec<&str> {
    entries.iter().map(|e| e.action.as_str()).collect()
}

#[tokio::test]
async fn views_downloads_and_deletes_are_audited_and_downloads_fail_closed() {
    let app = Audited::spawn().await;
    let org = app.org().await;
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let document = upload_file(&mut client, &analyst, "brief.txt", b"the brief").await;
    let id = document.id.clone();

    client
        .get_document(authed(&analyst, pb::GetDocumentRequest { id: id.clone() }))
        .await
        .unwrap();
    let download = client
        .get_document_download(authed(
            &analyst,
            pb::GetDocumentDownloadRequest {
                id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!download.url.is_empty());

    let entries = app.audit(org, "document", &id).await;
    assert_eq!(
        actions(&entries),
        ["document.download", "document.view"],
        "{entries:?}"
    );
    let got = &entries[0];
    assert_eq!(got.actor_id, "user-1");
    let details = struct_to_json(got.details.as_ref().unwrap());
    assert_eq!(details["version_id"], document.version_id.as_str());
    assert_eq!(details["current_version"], true);

    // A delete is recorded before it happens; a second one finds nothing.
    let other = upload_file(&mut client, &analyst, "other.txt", b"other").await;
    client
        .delete_document(authed(
            &analyst,
            pb::DeleteDocumentRequest {
                id: other.id.clone(),
            },
        ))
        .await
        .unwrap();
    assert_code(
        client
            .delete_document(authed(
                &analyst,
                pb::DeleteDocumentRequest {
                    id: other.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    let entries = app.audit(org, "document", &other.id).await;
    assert_eq!(actions(&entries), ["document.delete"], "{entries:?}");

    // Tenants goes away: no download URL is handed out and nothing is
    // deleted, while a metadata read still answers (its entry is logged as
    // lost).
    app.stop_tenants();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = assert_code(
        client
            .get_document_download(authed(
                &analyst,
                pb::GetDocumentDownloadRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::Unavailable,
    );
    assert!(refused.message().contains("audit log"), "{refused:?}");
    assert_code(
        client
            .delete_document(authed(
                &analyst,
                pb::DeleteDocumentRequest { id: id.clone() },
            ))
            .await,
        Code::Unavailable,
    );
    let still = client
        .get_document(authed(&analyst, pb::GetDocumentRequest { id: id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(still.status, i32::from(pb::DocumentStatus::Available));
    app.stop().await;
}

/// An available upload of `org` registered `days` ago, with two stored
/// versions of its bytes; its id and S3 key.
async fn old_upload(app: &Audited, org: OrgId, days: i64, name: &str) -> (Uuid, String) {
    let created: DateTime<Utc> = Utc::now() - TimeDelta::days(days);
    let id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(created.timestamp()).unwrap(),
        created.timestamp_subsec_nanos(),
    ));
    let file_name = FileName::parse("file_name", name).unwrap();
    let key = keys::upload(org, id, &file_name);
    let s3 = app.s3();
    let mut version = String::new();
    for body in [&b"first draft"[..], &b"final text"[..]] {
        version = s3
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap()
            .version_id
            .unwrap();
    }
    let meta = MetaStore::new(aws_sdk_dynamodb::Client::new(&app.sdk), TABLE.to_owned());
    meta.create_document(&DocumentRecord {
        document: Document {
            id,
            org_id: org,
            file_name,
            content_type: "text/plain".into(),
            size_bytes: 10,
            sha256: Sha256Hex::of(b"final text"),
            status: DocumentStatus::Pending,
            rejection_reason: String::new(),
            version_id: String::new(),
            created_by: "user-1".into(),
            created_at: created,
            updated_at: created,
            erased_at: None,
        },
        s3_key: key.clone(),
    })
    .await
    .unwrap();
    meta.transition(
        org,
        id,
        DocumentStatus::Pending,
        DocumentStatus::Available,
        "",
        &version,
    )
    .await
    .unwrap()
    .unwrap();
    (id, key)
}

/// How many versions and delete markers `key` has in the bucket.
async fn stored_versions(app: &Audited, key: &str) -> usize {
    let listed = app
        .s3()
        .list_object_versions()
        .bucket(BUCKET)
        .prefix(key)
        .send()
        .await
        .unwrap();
    listed.versions().len() + listed.delete_markers().len()
}

#[tokio::test]
async fn retention_erases_expired_uploads_once_and_keeps_the_rest() {
    let app = Audited::spawn().await;
    let org = app.org().await;
    let other_org = app.org().await;
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;

    let (old, old_key) = old_upload(&app, org, 100, "old.txt").await;
    let (half_done, half_done_key) = old_upload(&app, org, 95, "half.txt").await;
    let (recent, _) = old_upload(&app, org, 10, "recent.txt").await;
    let (foreign, foreign_key) = old_upload(&app, other_org, 100, "foreign.txt").await;
    let fresh = upload_file(&mut client, &analyst, "fresh.txt", b"fresh").await;
    assert_eq!(stored_versions(&app, &old_key).await, 2);

    // A run that crashed after deleting the bytes of `half_done` but
    // before its tombstone: the next run completes it.
    let s3 = app.s3();
    for version in s3
        .list_object_versions()
        .bucket(BUCKET)
        .prefix(&half_done_key)
        .send()
        .await
        .unwrap()
        .versions()
    {
        s3.delete_object()
            .bucket(BUCKET)
            .key(&half_done_key)
            .version_id(version.version_id().unwrap())
            .send()
            .await
            .unwrap();
    }

    // Without an audit log nothing is erased.
    let unaudited = treven_documents::build(app.config.clone(), &app.sdk, &app.keys).unwrap();
    let cutoff = Utc::now() - TimeDelta::days(90);
    let refused = unaudited
        .erase_expired_uploads(&app.operator(org), cutoff, None, 10)
        .await
        .expect_err("no audit log");
    assert_eq!(refused.code(), treven_mesh::ErrorCode::FailedPrecondition);

    // Bounded: one document per call, continued from where it stopped.
    let retention = app.retention();
    let first = retention
        .erase_expired_uploads(&app.operator(org), cutoff, None, 1)
        .await
        .unwrap();
    assert_eq!(first.documents, 1);
    assert!(first.next.is_some());
    let second = retention
        .erase_expired_uploads(&app.operator(org), cutoff, first.next, 10)
        .await
        .unwrap();
    assert_eq!(second.documents, 1);
    assert_eq!(second.next, None);
    assert_eq!(
        first.versions + second.versions,
        2,
        "only `old` still had bytes"
    );

    // The expired ones are tombstones: no bytes, no key, size 0, shown as
    // erased; a download is refused.
    for id in [old, half_done] {
        let document = client
            .get_document(authed(
                &analyst,
                pb::GetDocumentRequest { id: id.to_string() },
            ))
            .await
            .unwrap()
            .into_inner()
            .document
            .unwrap();
        assert_eq!(document.status, i32::from(pb::DocumentStatus::Erased));
        assert!(document.erased_at.is_some());
        assert_eq!(document.size_bytes, 0);
        assert_eq!(document.version_id, "");
        let status = assert_code(
            client
                .get_document_download(authed(
                    &analyst,
                    pb::GetDocumentDownloadRequest {
                        id: id.to_string(),
                        ..Default::default()
                    },
                ))
                .await,
            Code::FailedPrecondition,
        );
        assert!(status.message().contains("erased"), "{status:?}");
        let versions = client
            .list_document_versions(authed(
                &analyst,
                pb::ListDocumentVersionsRequest {
                    document_id: id.to_string(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(versions.items.is_empty());
    }
    assert_eq!(stored_versions(&app, &old_key).await, 0);
    assert_eq!(stored_versions(&app, &half_done_key).await, 0);

    // Fresh uploads, and the other organisation's old one, are untouched.
    for id in [recent.to_string(), fresh.id.clone()] {
        client
            .get_document_download(authed(
                &analyst,
                pb::GetDocumentDownloadRequest {
                    id,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let foreign_token = app.token(other_org, Role::Analyst);
    let foreign_doc = client
        .get_document(authed(
            &foreign_token,
            pb::GetDocumentRequest {
                id: foreign.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(foreign_doc.status, i32::from(pb::DocumentStatus::Available));
    assert_eq!(stored_versions(&app, &foreign_key).await, 2);

    // A re-run changes nothing and records nothing new.
    let again = retention
        .erase_expired_uploads(&app.operator(org), cutoff, None, 10)
        .await
        .unwrap();
    assert_eq!((again.documents, again.versions, again.next), (0, 0, None));
    for id in [old, half_done] {
        let entries: Vec<_> = app
            .audit(org, "document", &id.to_string())
            .await
            .into_iter()
            .filter(|e| e.action == "document.erase")
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].actor_id, "treven-retention");
        let details = struct_to_json(entries[0].details.as_ref().unwrap());
        assert_eq!(details["reason"], "retention");
    }
    assert!(
        app.audit(other_org, "document", &foreign.to_string())
            .await
            .iter()
            .all(|e| e.action != "document.erase")
    );
    app.stop().await;
}
