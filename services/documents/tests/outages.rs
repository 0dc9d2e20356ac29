//! S3 or DynamoDB unreachable: calls answer UNAVAILABLE quickly, and nothing
//! half-written is left behind (checked through a healthy instance that
//! shares the same emulator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{
    TestApp, assert_code, authed, org, put_file, sdk_for, serve, test_config, upload_file,
    upload_request,
};
use tonic::Code;
use treven_mesh::{Principal, Role};
use treven_proto::treven::documents::v1 as pb;

/// An endpoint where nothing listens.
fn dead_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn s3_down_is_unavailable_and_leaves_metadata_as_it_was() {
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut healthy = app.client().await;
    let bytes = b"kept".to_vec();
    let pending = put_file(&mut healthy, &analyst, "k.txt", &bytes).await.id;
    let available = upload_file(&mut healthy, &analyst, "a.txt", &bytes)
        .await
        .id;
    let source = healthy
        .upsert_source(authed(
            &analyst,
            pb::UpsertSourceRequest {
                locator: Some(pb::upsert_source_request::Locator::Url(
                    "https://ilo.example/report".into(),
                )),
                title: "ILO report".into(),
                publisher: "ILO".into(),
                publisher_kind: pb::PublisherKind::Intergovernmental.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();

    // The same service, with S3 unreachable.
    let broken_s3 = sdk_for(&dead_endpoint(), "test", "test").await;
    let documents = treven_documents::build_with(
        test_config(),
        treven_documents::s3_client(&test_config(), &broken_s3),
        aws_sdk_dynamodb::Client::new(&app.sdk),
        &app.keys,
    )
    .unwrap();
    let (address, _stop) = serve(documents, &app.keys).await;
    let mut broken = support::client(address).await;

    let started = Instant::now();
    let status = assert_code(
        broken
            .complete_upload(authed(
                &analyst,
                pb::CompleteUploadRequest {
                    id: pending.clone(),
                },
            ))
            .await,
        Code::Unavailable,
    );
    assert!(
        !status.message().contains("127.0.0.1"),
        "no internal detail: {}",
        status.message()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_code(
        broken
            .delete_document(authed(
                &analyst,
                pb::DeleteDocumentRequest {
                    id: available.clone(),
                },
            ))
            .await,
        Code::Unavailable,
    );
    let report = uuid::Uuid::now_v7().to_string();
    let evidence = pb::StoreEvidenceRequest {
        report_id: report.clone(),
        version: 1,
        source_ids: vec![source.id],
    };
    assert_code(
        broken
            .store_evidence(authed(&app.via(Principal::Reports, &analyst), evidence))
            .await,
        Code::Unavailable,
    );
    let artifact = vec![
        pb::PutArtifactRequest {
            part: Some(pb::put_artifact_request::Part::Header(pb::ArtifactHeader {
                report_id: report.clone(),
                version: 1,
                format: pb::ArtifactFormat::Markdown.into(),
                ..Default::default()
            })),
        },
        pb::PutArtifactRequest {
            part: Some(pb::put_artifact_request::Part::Chunk(b"# x".to_vec())),
        },
    ];
    assert_code(
        broken
            .put_artifact(authed(
                &app.via(Principal::Reports, &analyst),
                tokio_stream::iter(artifact),
            ))
            .await,
        Code::Unavailable,
    );

    // Nothing changed.
    let get = |id: String| pb::GetDocumentRequest { id };
    let still_pending = healthy
        .get_document(authed(&analyst, get(pending)))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(still_pending.status, pb::DocumentStatus::Pending as i32);
    let still_available = healthy
        .get_document(authed(&analyst, get(available)))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(still_available.status, pb::DocumentStatus::Available as i32);
    assert_code(
        healthy
            .get_evidence_pack(authed(
                &analyst,
                pb::GetEvidencePackRequest {
                    report_id: report.clone(),
                    version: 0,
                },
            ))
            .await,
        Code::NotFound,
    );
    let presign = pb::PresignArtifactRequest {
        report_id: report,
        version: 1,
        format: pb::ArtifactFormat::Markdown.into(),
        download_name: String::new(),
    };
    assert_code(
        healthy
            .presign_artifact(authed(&app.via(Principal::Reports, &analyst), presign))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn dynamodb_down_is_unavailable_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let analyst = app.token(org(), Role::Analyst);
    let broken_dynamodb = sdk_for(&dead_endpoint(), "test", "test").await;
    let documents = treven_documents::build_with(
        test_config(),
        treven_documents::s3_client(&test_config(), &app.sdk),
        aws_sdk_dynamodb::Client::new(&broken_dynamodb),
        &app.keys,
    )
    .unwrap();
    let (address, _stop) = serve(documents, &app.keys).await;
    let mut broken = support::client(address).await;

    assert_code(
        broken
            .create_upload(authed(
                &analyst,
                upload_request("x.txt", "text/plain", b"x"),
            ))
            .await,
        Code::Unavailable,
    );
    assert_code(
        broken
            .list_documents(authed(&analyst, pb::ListDocumentsRequest::default()))
            .await,
        Code::Unavailable,
    );
    assert_code(
        broken
            .search_sources(authed(&analyst, pb::SearchSourcesRequest::default()))
            .await,
        Code::Unavailable,
    );

    let mut healthy = app.client().await;
    assert!(
        healthy
            .list_documents(authed(&analyst, pb::ListDocumentsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty()
    );
}
