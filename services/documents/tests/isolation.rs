//! Organisation B cannot get, list, download, complete, delete or presign
//! anything of organisation A, and A's cursors are refused for B.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestApp, assert_code, authed, org, upload_file, upload_request, violated_fields};
use tonic::Code;
use treven_mesh::{Principal, Role};
use treven_proto::treven::documents::v1 as pb;

#[tokio::test]
async fn organisation_b_cannot_reach_organisation_a() {
    let app = TestApp::spawn().await;
    let (org_a, org_b) = (org(), org());
    let a = app.token(org_a, Role::Admin);
    let b = app.token(org_b, Role::Admin);
    let mut client = app.client().await;

    // A: an available document, a pending one, a source, evidence and an artifact.
    let bytes = b"alpha only".to_vec();
    let available = upload_file(&mut client, &a, "a.txt", &bytes).await.id;
    let pending = client
        .create_upload(authed(&a, upload_request("p.txt", "text/plain", &bytes)))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap()
        .id;
    for i in 0..3 {
        client
            .create_upload(authed(
                &a,
                upload_request(&format!("more{i}.txt"), "text/plain", &bytes),
            ))
            .await
            .unwrap();
    }
    let source = client
        .upsert_source(authed(
            &a,
            pb::UpsertSourceRequest {
                locator: Some(pb::upsert_source_request::Locator::Url(
                    "https://www.gov.uk/modern-slavery".into(),
                )),
                title: "Modern slavery statistics".into(),
                publisher: "Home Office".into(),
                publisher_kind: pb::PublisherKind::Government.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    let report = uuid::Uuid::now_v7().to_string();
    client
        .store_evidence(authed(
            &app.via(Principal::Reports, &a),
            pb::StoreEvidenceRequest {
                report_id: report.clone(),
                version: 1,
                source_ids: vec![source.id.clone()],
            },
        ))
        .await
        .unwrap();
    let header = pb::PutArtifactRequest {
        part: Some(pb::put_artifact_request::Part::Header(pb::ArtifactHeader {
            report_id: report.clone(),
            version: 1,
            format: pb::ArtifactFormat::Markdown.into(),
            content_type: String::new(),
            sha256: String::new(),
        })),
    };
    let chunk = pb::PutArtifactRequest {
        part: Some(pb::put_artifact_request::Part::Chunk(b"# REPORT".to_vec())),
    };
    client
        .put_artifact(authed(
            &app.via(Principal::Reports, &a),
            tokio_stream::iter(vec![header, chunk]),
        ))
        .await
        .unwrap();

    // B sees none of it.
    for id in [&available, &pending] {
        assert_code(
            client
                .get_document(authed(&b, pb::GetDocumentRequest { id: id.clone() }))
                .await,
            Code::NotFound,
        );
        assert_code(
            client
                .get_document_download(authed(
                    &b,
                    pb::GetDocumentDownloadRequest {
                        id: id.clone(),
                        version_id: String::new(),
                    },
                ))
                .await,
            Code::NotFound,
        );
        assert_code(
            client
                .complete_upload(authed(&b, pb::CompleteUploadRequest { id: id.clone() }))
                .await,
            Code::NotFound,
        );
        assert_code(
            client
                .delete_document(authed(&b, pb::DeleteDocumentRequest { id: id.clone() }))
                .await,
            Code::NotFound,
        );
        assert_code(
            client
                .list_document_versions(authed(
                    &app.via(Principal::Operator, &b),
                    pb::ListDocumentVersionsRequest {
                        document_id: id.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            Code::NotFound,
        );
    }
    assert!(
        client
            .list_documents(authed(&b, pb::ListDocumentsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty()
    );
    let found = client
        .search_sources(authed(&b, pb::SearchSourcesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(found.items.is_empty());
    let steal = pb::StoreEvidenceRequest {
        report_id: uuid::Uuid::now_v7().to_string(),
        version: 1,
        source_ids: vec![source.id.clone()],
    };
    assert_code(
        client
            .store_evidence(authed(&app.via(Principal::Reports, &b), steal))
            .await,
        Code::InvalidArgument,
    );
    assert_code(
        client
            .get_evidence_pack(authed(
                &b,
                pb::GetEvidencePackRequest {
                    report_id: report.clone(),
                    version: 0,
                },
            ))
            .await,
        Code::NotFound,
    );
    let presign = pb::PresignArtifactRequest {
        report_id: report.clone(),
        version: 1,
        format: pb::ArtifactFormat::Markdown.into(),
        download_name: String::new(),
    };
    assert_code(
        client
            .presign_artifact(authed(&app.via(Principal::Reports, &b), presign.clone()))
            .await,
        Code::NotFound,
    );

    // A's cursor is refused for B.
    let page = client
        .list_documents(authed(
            &a,
            pb::ListDocumentsRequest {
                limit: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_cursor.is_empty());
    let status = assert_code(
        client
            .list_documents(authed(
                &b,
                pb::ListDocumentsRequest {
                    limit: 2,
                    cursor: page.next_cursor,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["cursor".to_owned()]);

    // A still has everything.
    assert_eq!(
        client
            .get_document(authed(&a, pb::GetDocumentRequest { id: available }))
            .await
            .unwrap()
            .into_inner()
            .document
            .unwrap()
            .status,
        pb::DocumentStatus::Available as i32
    );
    let url = client
        .presign_artifact(authed(&app.via(Principal::Reports, &a), presign))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(
        url.contains(&format!("/{org_a}/reports/{report}/v1/report.md")),
        "{url}"
    );
    let pack = client
        .get_evidence_pack(authed(
            &a,
            pb::GetEvidencePackRequest {
                report_id: report,
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        pack.url
            .contains(&format!("/{org_a}/exports/{}/bundle.zip", pack.export_id))
    );
}

#[tokio::test]
async fn every_rpc_answers_each_principal_and_role_as_its_table_says() {
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let calls = treven_testkit::policy::walk(
        &channel,
        &treven_documents::policy::POLICY,
        &app.keys,
        support::org(),
    )
    .await;
    assert!(calls > 100, "walked {calls} calls");

    // The calls the issue names: a user at the edge, even an admin, cannot
    // plant evidence or pre-empt an export's artifact.
    let org = support::org();
    let admin = app.token(org, Role::Admin);
    let mut client = app.client().await;
    let evidence = pb::StoreEvidenceRequest {
        report_id: uuid::Uuid::now_v7().to_string(),
        version: 1,
        source_ids: vec![],
    };
    assert_code(
        client.store_evidence(authed(&admin, evidence)).await,
        Code::PermissionDenied,
    );
    let artifact = vec![pb::PutArtifactRequest {
        part: Some(pb::put_artifact_request::Part::Header(pb::ArtifactHeader {
            report_id: uuid::Uuid::now_v7().to_string(),
            version: 1,
            format: pb::ArtifactFormat::Markdown.into(),
            ..Default::default()
        })),
    }];
    assert_code(
        client
            .put_artifact(authed(&admin, tokio_stream::iter(artifact)))
            .await,
        Code::PermissionDenied,
    );
}
