//! Uploads through presigned URLs against the moto emulator, with curl as
//! the client, and downloads, deletes and versions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    TestApp, assert_code, authed, curl_get, curl_put, headers_of, org, upload_file, upload_request,
    violated_fields,
};
use tonic::Code;
use treven_mesh::{Principal, Role};
use treven_proto::treven::documents::v1 as pb;

#[tokio::test]
async fn a_file_uploaded_with_curl_completes_and_downloads_under_its_name() {
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let bytes = b"Seasonal workers in UK agriculture: debt bondage indicators.\n".repeat(20);

    let upload = client
        .create_upload(authed(
            &analyst,
            upload_request("Évaluation – mai.txt", "text/plain", &bytes),
        ))
        .await
        .expect("create")
        .into_inner();
    let document = upload.document.clone().unwrap();
    assert_eq!(document.status, pb::DocumentStatus::Pending as i32);
    assert!(
        upload
            .upload_url
            .contains(&format!("/{org}/uploads/{}/", document.id)),
        "{}",
        upload.upload_url
    );
    assert!(
        upload.upload_headers.contains_key("x-amz-checksum-sha256"),
        "{:?}",
        upload.upload_headers
    );

    assert_eq!(
        curl_put(&upload.upload_url, &headers_of(&upload), &bytes),
        200
    );
    let done = client
        .complete_upload(authed(
            &analyst,
            pb::CompleteUploadRequest {
                id: document.id.clone(),
            },
        ))
        .await
        .expect("complete");
    let done = done.into_inner().document.unwrap();
    assert_eq!(
        done.status,
        pb::DocumentStatus::Available as i32,
        "{}",
        done.rejection_reason
    );
    assert!(!done.version_id.is_empty());

    let viewer = app.token(org, Role::Viewer);
    let link = client
        .get_document_download(authed(
            &viewer,
            pb::GetDocumentDownloadRequest {
                id: document.id.clone(),
                version_id: String::new(),
            },
        ))
        .await;
    let (status, headers, body) = curl_get(&link.expect("download").into_inner().url);
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
    let headers = headers.to_lowercase();
    assert!(
        headers.contains("filename*=utf-8''%c3%89valuation%20%e2%80%93%20mai.txt"),
        "{headers}"
    );
}

#[tokio::test]
async fn a_wrong_size_or_checksum_is_rejected_with_the_reason() {
    let app = TestApp::spawn().await;
    let analyst = app.token(org(), Role::Analyst);
    let mut client = app.client().await;

    // Same length, other bytes: the emulator stores them (S3 in AWS would
    // refuse them on the checksum); completion hashes the stored bytes.
    let declared = b"the declared bytes".to_vec();
    let upload = client
        .create_upload(authed(
            &analyst,
            upload_request("a.txt", "text/plain", &declared),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        curl_put(
            &upload.upload_url,
            &headers_of(&upload),
            b"other bytes, sameX"
        ),
        200
    );
    let id = upload.document.unwrap().id;
    let done = client
        .complete_upload(authed(
            &analyst,
            pb::CompleteUploadRequest { id: id.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(done.status, pb::DocumentStatus::Rejected as i32);
    assert!(
        done.rejection_reason.contains("SHA-256"),
        "{}",
        done.rejection_reason
    );
    // A rejected document cannot be downloaded.
    assert_code(
        client
            .get_document_download(authed(
                &analyst,
                pb::GetDocumentDownloadRequest {
                    id,
                    version_id: String::new(),
                },
            ))
            .await,
        Code::FailedPrecondition,
    );

    // Another size, written past the presigned URL: rejected on size.
    let upload = client
        .create_upload(authed(
            &analyst,
            upload_request("b.txt", "text/plain", &declared),
        ))
        .await
        .unwrap()
        .into_inner();
    let document = upload.document.unwrap();
    let key = format!("{}/uploads/{}/b.txt", document.org_id, document.id);
    app.s3()
        .put_object()
        .bucket(support::BUCKET)
        .key(&key)
        .body(b"short".to_vec().into())
        .send()
        .await
        .unwrap();
    let done = client
        .complete_upload(authed(
            &analyst,
            pb::CompleteUploadRequest {
                id: document.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(done.status, pb::DocumentStatus::Rejected as i32);
    assert!(
        done.rejection_reason.contains("size is 5 bytes"),
        "{}",
        done.rejection_reason
    );

    // Nothing uploaded yet: the document stays pending.
    let upload = client
        .create_upload(authed(
            &analyst,
            upload_request("c.txt", "text/plain", &declared),
        ))
        .await
        .unwrap()
        .into_inner();
    let id = upload.document.unwrap().id;
    assert_code(
        client
            .complete_upload(authed(
                &analyst,
                pb::CompleteUploadRequest { id: id.clone() },
            ))
            .await,
        Code::FailedPrecondition,
    );
    let still = client
        .get_document(authed(&analyst, pb::GetDocumentRequest { id }))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(still.status, pb::DocumentStatus::Pending as i32);
}

#[tokio::test]
async fn bad_upload_requests_are_invalid_argument_naming_the_field() {
    let app = TestApp::spawn().await;
    let analyst = app.token(org(), Role::Analyst);
    let mut client = app.client().await;
    let ok = upload_request("ok.pdf", "application/pdf", b"%PDF-1.7");
    let cases = [
        (
            pb::CreateUploadRequest {
                file_name: "../../etc/passwd".into(),
                ..ok.clone()
            },
            "file_name",
        ),
        (
            pb::CreateUploadRequest {
                file_name: "a/b.pdf".into(),
                ..ok.clone()
            },
            "file_name",
        ),
        (
            pb::CreateUploadRequest {
                file_name: "..".into(),
                ..ok.clone()
            },
            "file_name",
        ),
        (
            pb::CreateUploadRequest {
                file_name: String::new(),
                ..ok.clone()
            },
            "file_name",
        ),
        (
            pb::CreateUploadRequest {
                file_name: "x".repeat(300),
                ..ok.clone()
            },
            "file_name",
        ),
        (
            pb::CreateUploadRequest {
                content_type: "text/html".into(),
                ..ok.clone()
            },
            "content_type",
        ),
        (
            pb::CreateUploadRequest {
                content_type: "application/x-msdownload".into(),
                ..ok.clone()
            },
            "content_type",
        ),
        (
            pb::CreateUploadRequest {
                size_bytes: -1,
                ..ok.clone()
            },
            "size_bytes",
        ),
        (
            pb::CreateUploadRequest {
                size_bytes: 0,
                ..ok.clone()
            },
            "size_bytes",
        ),
        (
            pb::CreateUploadRequest {
                size_bytes: 100_000_001,
                ..ok.clone()
            },
            "size_bytes",
        ),
        (
            pb::CreateUploadRequest {
                sha256: "abc".into(),
                ..ok.clone()
            },
            "sha256",
        ),
        (
            pb::CreateUploadRequest {
                sha256: "z".repeat(64),
                ..ok.clone()
            },
            "sha256",
        ),
    ];
    for (request, field) in cases {
        let status = assert_code(
            client.create_upload(authed(&analyst, request)).await,
            Code::InvalidArgument,
        );
        assert_eq!(
            violated_fields(&status),
            vec![field.to_owned()],
            "{status:?}"
        );
    }
    for id in ["", "nope", "../x"] {
        let status = assert_code(
            client
                .complete_upload(authed(
                    &analyst,
                    pb::CompleteUploadRequest { id: id.into() },
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["id".to_owned()]);
    }
    // Viewers cannot upload.
    let viewer = app.token(org(), Role::Viewer);
    assert_code(
        client.create_upload(authed(&viewer, ok)).await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn delete_hides_the_document_and_versions_keep_its_history() {
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let bytes = b"version one".to_vec();
    let done = upload_file(&mut client, &analyst, "v.txt", &bytes).await;
    let id = done.id.clone();

    client
        .delete_document(authed(
            &analyst,
            pb::DeleteDocumentRequest { id: id.clone() },
        ))
        .await
        .expect("deleted");
    assert_code(
        client
            .get_document(authed(&analyst, pb::GetDocumentRequest { id: id.clone() }))
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .delete_document(authed(
                &analyst,
                pb::DeleteDocumentRequest { id: id.clone() },
            ))
            .await,
        Code::NotFound,
    );
    let listed = client
        .list_documents(authed(&analyst, pb::ListDocumentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.items.iter().all(|d| d.id != id),
        "listing hides deleted documents"
    );

    let versions = client
        .list_document_versions(authed(
            &app.via(Principal::Operator, &analyst),
            pb::ListDocumentVersionsRequest {
                document_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("versions")
        .into_inner()
        .items;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions[0].delete_marker, "newest first: the delete marker");
    assert_eq!(versions[1].version_id, done.version_id);
    assert_eq!(versions[1].size_bytes, bytes.len() as i64);
    assert_eq!(
        versions[1].sha256, done.sha256,
        "the kept version still has its checksum"
    );
    // The kept bytes are still in S3 under that version.
    let kept = app
        .s3()
        .get_object()
        .bucket(support::BUCKET)
        .key(format!("{org}/uploads/{id}/v.txt"))
        .version_id(&done.version_id)
        .send()
        .await;
    assert_eq!(
        kept.expect("old version kept")
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec(),
        bytes
    );
}

#[tokio::test]
async fn pagination_returns_every_document_exactly_once_newest_first() {
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let mut created = Vec::new();
    for i in 0..17 {
        let content_type = if i % 3 == 0 { "text/csv" } else { "text/plain" };
        let upload = client
            .create_upload(authed(
                &analyst,
                upload_request(&format!("f{i}.txt"), content_type, b"x"),
            ))
            .await
            .unwrap()
            .into_inner();
        created.push(upload.document.unwrap().id);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_documents(authed(
                &analyst,
                pb::ListDocumentsRequest {
                    limit: 5,
                    cursor: cursor.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.items.len() <= 5);
        seen.extend(page.items.into_iter().map(|d| d.id));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    created.reverse();
    assert_eq!(seen, created, "every document once, newest first");

    // A filtered list pages through the matching ones only.
    let mut csv = Vec::new();
    let mut cursor = String::new();
    loop {
        let request = pb::ListDocumentsRequest {
            limit: 2,
            cursor: cursor.clone(),
            content_type: "text/csv".into(),
            ..Default::default()
        };
        let page = client
            .list_documents(authed(&analyst, request))
            .await
            .unwrap()
            .into_inner();
        csv.extend(page.items.into_iter().map(|d| d.content_type));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(csv.len(), 6);
    assert!(csv.iter().all(|t| t == "text/csv"));
}

/// A pending upload that is never completed expires (the table's TTL
/// attribute, and hidden from lists once past it); a completed one does
/// not.
#[tokio::test]
async fn pending_uploads_expire_and_completed_ones_do_not() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&app.sdk);
    let table = support::test_config().table;
    let expires_at = |id: String| {
        let (dynamo, table) = (dynamo.clone(), table.clone());
        async move {
            let item = dynamo
                .get_item()
                .table_name(table)
                .key("PK", AttributeValue::S(format!("ORG#{org}")))
                .key("SK", AttributeValue::S(format!("DOC#{id}")))
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            item.get("expires_at")
                .map(|v| v.as_n().unwrap().parse::<i64>().unwrap())
        }
    };

    let pending = support::put_file(&mut client, &analyst, "never.txt", b"never completed").await;
    let now = chrono::Utc::now().timestamp();
    let expiry = expires_at(pending.id.clone()).await.expect("a TTL");
    assert!(
        (now + 23 * 3600..=now + 25 * 3600).contains(&expiry),
        "about a day: {expiry} vs {now}"
    );
    let completed = upload_file(&mut client, &analyst, "done.txt", b"completed").await;
    assert_eq!(completed.status, pb::DocumentStatus::Available as i32);
    assert_eq!(expires_at(completed.id.clone()).await, None, "kept");

    // Past its expiry (DynamoDB deletes lazily), the pending one is no
    // longer listed.
    dynamo
        .update_item()
        .table_name(&table)
        .key("PK", AttributeValue::S(format!("ORG#{org}")))
        .key("SK", AttributeValue::S(format!("DOC#{}", pending.id)))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((now - 1).to_string()))
        .send()
        .await
        .unwrap();
    let listed = client
        .list_documents(authed(&analyst, pb::ListDocumentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [completed.id.as_str()]);
}
