//! Artifacts larger than one part stream to S3 as multipart uploads: the
//! object appears only when complete, with its metadata; a refused,
//! mismatched or cancelled stream leaves no upload, object or metadata
//! behind; and uploads beyond the concurrency bound are refused with
//! RESOURCE_EXHAUSTED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures::SinkExt as _;
use tonic::Code;
use treven_documents::store::blobs::PART_BYTES;
use treven_mesh::{ErrorCode, Principal, Role};
use treven_proto::treven::documents::v1 as pb;

use support::{TestApp, assert_code, authed, curl_get, org, sha256_hex, violated_fields};

/// Deterministic, incompressible-looking bytes.
fn artifact_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn header(report: &str, sha256: &str) -> pb::PutArtifactRequest {
    pb::PutArtifactRequest {
        part: Some(pb::put_artifact_request::Part::Header(pb::ArtifactHeader {
            report_id: report.into(),
            version: 1,
            format: pb::ArtifactFormat::Pdf.into(),
            content_type: String::new(),
            sha256: sha256.into(),
        })),
    }
}

/// The header, then `bytes` in 1 MiB chunks.
fn messages(report: &str, sha256: &str, bytes: &[u8]) -> Vec<pb::PutArtifactRequest> {
    let mut messages = vec![header(report, sha256)];
    messages.extend(
        bytes
            .chunks(1024 * 1024)
            .map(|chunk| pb::PutArtifactRequest {
                part: Some(pb::put_artifact_request::Part::Chunk(chunk.to_vec())),
            }),
    );
    messages
}

async fn open_multipart_uploads(app: &TestApp) -> usize {
    app.s3()
        .list_multipart_uploads()
        .bucket(support::BUCKET)
        .send()
        .await
        .expect("list multipart uploads")
        .uploads()
        .len()
}

async fn wait_for_open_uploads(app: &TestApp, expected: usize) {
    let start = Instant::now();
    while open_multipart_uploads(app).await != expected {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still not {expected} open multipart uploads"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn object_exists(app: &TestApp, org: treven_mesh::OrgId, report: &str) -> bool {
    app.s3()
        .head_object()
        .bucket(support::BUCKET)
        .key(format!("{org}/reports/{report}/v1/report.pdf"))
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn large_artifacts_stream_in_parts_and_nothing_half_written_becomes_visible() {
    let app = TestApp::spawn_with(&[("TREVEN_ARTIFACT_MAX_BYTES", "20000000")]).await;
    let org = org();
    let analyst = app.token_from(Principal::Reports, org, Role::Analyst);
    let mut client = app.client().await;

    // Three parts: two full ones and a short last one.
    let report = uuid::Uuid::now_v7().to_string();
    let pdf = artifact_bytes(2 * PART_BYTES + 123_456, 7);
    let digest = sha256_hex(&pdf);
    let stored = client
        .put_artifact(authed(
            &analyst,
            tokio_stream::iter(messages(&report, &digest, &pdf)),
        ))
        .await
        .expect("stored")
        .into_inner();
    assert_eq!(
        (stored.size_bytes, stored.sha256.as_str()),
        (pdf.len() as i64, digest.as_str())
    );
    assert_eq!(open_multipart_uploads(&app).await, 0);
    let link = client
        .presign_artifact(authed(
            &analyst,
            pb::PresignArtifactRequest {
                report_id: report.clone(),
                version: 1,
                format: pb::ArtifactFormat::Pdf.into(),
                download_name: String::new(),
            },
        ))
        .await
        .expect("presign")
        .into_inner();
    let (status, headers, body) = curl_get(&link.url);
    assert_eq!(status, 200);
    assert!(headers.contains("application/pdf"), "{headers}");
    assert_eq!((body.len(), sha256_hex(&body)), (pdf.len(), digest.clone()));

    // Over the cap after two parts were sent: refused, and the upload aborted.
    let too_big = uuid::Uuid::now_v7().to_string();
    let bytes = artifact_bytes(20_000_001, 8);
    let status = assert_code(
        client
            .put_artifact(authed(
                &analyst,
                tokio_stream::iter(messages(&too_big, "", &bytes)),
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["chunk".to_owned()]);
    assert!(status.message().contains("20000000"), "{status:?}");

    // A declared SHA-256 that the bytes do not match: refused at the end,
    // after a part was sent; aborted too.
    let mismatched = uuid::Uuid::now_v7().to_string();
    let bytes = artifact_bytes(PART_BYTES + 1, 9);
    let status = assert_code(
        client
            .put_artifact(authed(
                &analyst,
                tokio_stream::iter(messages(&mismatched, &"0".repeat(64), &bytes)),
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["header.sha256".to_owned()]);

    assert_eq!(open_multipart_uploads(&app).await, 0, "refusals abort");
    for report in [&too_big, &mismatched] {
        assert!(
            !object_exists(&app, org, report).await,
            "{report} is visible"
        );
        assert_code(
            client
                .presign_artifact(authed(
                    &analyst,
                    pb::PresignArtifactRequest {
                        report_id: report.clone(),
                        version: 1,
                        format: pb::ArtifactFormat::Pdf.into(),
                        download_name: String::new(),
                    },
                ))
                .await,
            Code::NotFound,
        );
    }
}

#[tokio::test]
async fn a_cancelled_stream_aborts_its_multipart_upload() {
    let app = TestApp::spawn_with(&[("TREVEN_ARTIFACT_MAX_BYTES", "20000000")]).await;
    let org = org();
    let analyst = app.token_from(Principal::Reports, org, Role::Analyst);
    let mut client = app.client().await;
    let report = uuid::Uuid::now_v7().to_string();

    // More than one part goes in (the first is sent once the next byte
    // arrives), then the caller goes away with the stream still open.
    let (mut sender, receiver) = futures::channel::mpsc::channel(4);
    let call = tokio::spawn(async move { client.put_artifact(authed(&analyst, receiver)).await });
    for message in messages(&report, "", &artifact_bytes(PART_BYTES + 1024, 3)) {
        sender.send(message).await.unwrap();
    }
    wait_for_open_uploads(&app, 1).await;
    call.abort();
    let _ = call.await;
    drop(sender);

    wait_for_open_uploads(&app, 0).await;
    assert!(!object_exists(&app, org, &report).await);
}

#[tokio::test]
async fn uploads_beyond_the_bound_are_refused_with_resource_exhausted() {
    let app = TestApp::spawn_with(&[
        ("TREVEN_ARTIFACT_MAX_BYTES", "20000000"),
        ("TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS", "1"),
    ])
    .await;
    let org = org();
    let analyst = app.token_from(Principal::Reports, org, Role::Analyst);
    let mut client = app.client().await;

    // One upload holds the only slot: its bytes are in (the first part in
    // S3), its stream still open.
    let report = uuid::Uuid::now_v7().to_string();
    let bytes = artifact_bytes(PART_BYTES + 1024, 4);
    let digest = sha256_hex(&bytes);
    let (mut sender, receiver) = futures::channel::mpsc::channel(4);
    let holding = tokio::spawn({
        let mut client = client.clone();
        let analyst = analyst.clone();
        async move { client.put_artifact(authed(&analyst, receiver)).await }
    });
    for message in messages(&report, &digest, &bytes) {
        sender.send(message).await.unwrap();
    }
    wait_for_open_uploads(&app, 1).await;

    // Another is refused at once, with a code the caller can retry on.
    let other = uuid::Uuid::now_v7().to_string();
    let small = b"%PDF small".to_vec();
    let status = assert_code(
        client
            .put_artifact(authed(
                &analyst,
                tokio_stream::iter(messages(&other, "", &small)),
            ))
            .await,
        Code::ResourceExhausted,
    );
    assert_eq!(ErrorCode::of_status(&status), ErrorCode::RateLimited);
    assert!(status.message().contains("retry"), "{status:?}");

    // The first completes; its slot is then free for the retry.
    drop(sender);
    let stored = holding.await.unwrap().expect("stored").into_inner();
    assert_eq!(stored.sha256, digest);
    client
        .put_artifact(authed(
            &analyst,
            tokio_stream::iter(messages(&other, "", &small)),
        ))
        .await
        .expect("the retry is stored");
}

#[test]
fn the_upload_bound_defaults_to_8_and_refuses_nonsense_naming_the_variable() {
    use treven_documents::DocumentsConfig;
    use treven_mesh::config::Env;
    let config = DocumentsConfig::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
    assert_eq!(config.max_concurrent_uploads, 8);
    for bad in ["0", "many", "1025"] {
        let error = DocumentsConfig::from_env(&Env::from_pairs([(
            "TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS",
            bad,
        )]))
        .expect_err(bad);
        assert_eq!(
            error.variable, "TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS",
            "{bad}"
        );
    }
}

/// Upload types and sizes are the API's contract (documents.proto): the
/// variables that once changed them refuse to start the service rather than
/// be silently ignored.
#[test]
fn the_retired_upload_variables_refuse_to_start_naming_the_variable() {
    use treven_documents::DocumentsConfig;
    use treven_mesh::config::Env;
    for (variable, value) in [
        ("TREVEN_UPLOAD_CONTENT_TYPES", "application/pdf"),
        ("TREVEN_UPLOAD_MAX_BYTES", "1000"),
    ] {
        let error =
            DocumentsConfig::from_env(&Env::from_pairs([(variable, value)])).expect_err(variable);
        assert_eq!(error.variable, variable);
        assert!(error.to_string().contains("documents.proto"), "{error}");
    }
}
