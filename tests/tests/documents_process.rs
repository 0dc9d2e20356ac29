//! `treven serve --target documents` against the moto emulator: grpcurl can
//! list, describe and call every RPC through reflection, and concurrent
//! 48 MB artifact streams stay within the process's memory limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Moto, Server, stdout_of, tool};

fn grpcurl(args: &[&str]) -> std::process::Output {
    Command::new(tool("grpcurl"))
        .args(args)
        .output()
        .expect("grpcurl runs")
}

#[tokio::test]
async fn grpcurl_reaches_every_documents_rpc_through_reflection() {
    let moto = Moto::start();
    let mut envs = moto.aws_env();
    envs.extend([
        ("TREVEN_DATA_BUCKET", "treven-data-e2e".to_owned()),
        ("TREVEN_DOCUMENTS_TABLE", "treven-documents-e2e".to_owned()),
    ]);
    let config = treven_documents::DocumentsConfig::from_env(
        &treven_mesh::config::Env::from_pairs(envs.clone()),
    )
    .unwrap();
    treven_documents::provision::create_bucket_and_table(&moto.sdk().await, &config)
        .await
        .expect("provisioned");
    let keys = treven_mesh::keys::MeshKeys::generate();
    envs.extend(keys.only(&[treven_mesh::Principal::Documents]).env());
    let server = Server::start("documents", "TREVEN_DOCUMENTS_ADDR", envs);
    let addr = server.address();

    let listed = stdout_of(grpcurl(&["-plaintext", &addr, "list"]));
    assert!(
        listed
            .lines()
            .any(|l| l == "treven.documents.v1.DocumentsService"),
        "{listed}"
    );
    let described = stdout_of(grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "treven.documents.v1.DocumentsService",
    ]));
    let rpcs: Vec<&str> = described
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(rpcs.len(), 13, "{described}");

    let org = uuid::Uuid::now_v7().to_string();
    // An operator's context (what `treven admin mint-context` prints; that
    // command also audits through tenants, which this test does not run):
    // the operator may call every RPC, internal ones included.
    let token = keys
        .signer(treven_mesh::Principal::Operator)
        .expect("every key")
        .mint(
            treven_mesh::Principal::Documents,
            org.parse().expect("uuid"),
            "e2e",
            &[treven_mesh::Role::Analyst],
            "e2e",
            Duration::from_secs(300),
        );
    let header = format!("x-treven-context: {token}");
    // Each RPC, called by name with JSON, reaches its handler: the answer is
    // a result or a domain error, never UNIMPLEMENTED, UNKNOWN or INTERNAL.
    for rpc in rpcs {
        let body = match rpc {
            "CreateUpload" => {
                r#"{"fileName":"a.txt","contentType":"text/plain","sizeBytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#
            }
            "UpsertSource" => {
                r#"{"url":"https://www.ilo.org/forced-labour","title":"Forced labour","publisher":"ILO","publisherKind":"PUBLISHER_KIND_INTERGOVERNMENTAL"}"#
            }
            "PutArtifact" => {
                r#"{"header":{"reportId":"01a21000-0000-7000-8000-000000000000","version":1,"format":"ARTIFACT_FORMAT_MARKDOWN"}} {"chunk":"IyBSRVBPUlQ="}"#
            }
            _ => "{}",
        };
        let method = format!("treven.documents.v1.DocumentsService/{rpc}");
        let output = grpcurl(&["-plaintext", "-H", &header, "-d", body, &addr, &method]);
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        for refused in ["Unimplemented", "Unknown", "Internal", "Unauthenticated"] {
            assert!(!text.contains(&format!("Code: {refused}")), "{rpc}: {text}");
        }
        if [
            "CreateUpload",
            "UpsertSource",
            "PutArtifact",
            "ListDocuments",
            "SearchSources",
        ]
        .contains(&rpc)
        {
            assert!(output.status.success(), "{rpc}: {text}");
        }
    }
}

/// `VmHWM` (peak) and `VmRSS` of a process, in KiB, from `/proc/<pid>/status`.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {status}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

const ARTIFACT_BYTES: usize = 48_000_000;
const CHUNK_BYTES: usize = 1024 * 1024;
const STREAMS: u64 = 20;
/// The documents process must stay under this. Twenty whole 48 MB artifacts
/// in memory (how PutArtifact used to work) are 960 MB; streaming holds at
/// most one 8 MiB part per upload and 8 uploads at once.
const RSS_LIMIT_MIB: u64 = 300;

/// Chunk `index` of artifact `stream`: a random 1 MiB block, stamped with
/// both numbers so every artifact and every chunk differs.
fn artifact_chunk(block: &[u8], stream: u64, index: usize) -> Vec<u8> {
    let start = index * CHUNK_BYTES;
    let len = CHUNK_BYTES.min(ARTIFACT_BYTES - start);
    let mut chunk = block[..len].to_vec();
    chunk[..8].copy_from_slice(&stream.to_le_bytes());
    chunk[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    chunk
}

fn artifact_sha256(block: &[u8], stream: u64) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for index in 0..ARTIFACT_BYTES.div_ceil(CHUNK_BYTES) {
        hasher.update(artifact_chunk(block, stream, index));
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The issue's bound: 20 concurrent 48 MB PutArtifact streams leave the
/// documents process under its memory limit, and each one completes (the
/// object readable with the right size and hash) or is refused with
/// RESOURCE_EXHAUSTED — never reset, never hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_48_mb_artifacts_stream_within_the_memory_limit() {
    use futures::StreamExt as _;
    use sha2::Digest as _;
    use treven_proto::treven::documents::v1 as pb;
    use treven_proto::treven::documents::v1::documents_service_client::DocumentsServiceClient;

    let started = std::time::Instant::now();
    let moto = Moto::start();
    let mut envs = moto.aws_env();
    envs.extend([
        ("TREVEN_DATA_BUCKET", "treven-data-e2e".to_owned()),
        ("TREVEN_DOCUMENTS_TABLE", "treven-documents-e2e".to_owned()),
        ("TREVEN_LOG", "warn".to_owned()),
    ]);
    let config = treven_documents::DocumentsConfig::from_env(
        &treven_mesh::config::Env::from_pairs(envs.clone()),
    )
    .unwrap();
    assert_eq!(
        (config.max_artifact_bytes, config.max_concurrent_uploads),
        (50_000_000, 8),
        "the defaults are what is measured"
    );
    treven_documents::provision::create_bucket_and_table(&moto.sdk().await, &config)
        .await
        .expect("provisioned");
    let keys = treven_mesh::keys::MeshKeys::generate();
    envs.extend(keys.only(&[treven_mesh::Principal::Documents]).env());
    let server = Server::start("documents", "TREVEN_DOCUMENTS_ADDR", envs);
    let pid = server.child.id();
    // The reports service stores artifacts, for an analyst.
    let token = keys
        .signer(treven_mesh::Principal::Reports)
        .expect("every key")
        .mint(
            treven_mesh::Principal::Documents,
            treven_mesh::OrgId::new(uuid::Uuid::now_v7()),
            "e2e",
            &[treven_mesh::Role::Analyst],
            "e2e",
            Duration::from_secs(600),
        );
    let (_, idle_kib) = memory_kib(pid);

    let block: std::sync::Arc<Vec<u8>> = std::sync::Arc::new(
        (0..CHUNK_BYTES as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect(),
    );
    let endpoint = format!("http://{}", server.address());
    let calls = (0..STREAMS).map(|stream| {
        let (block, token, endpoint) = (block.clone(), token.clone(), endpoint.clone());
        tokio::spawn(async move {
            let sha256 = {
                let block = block.clone();
                tokio::task::spawn_blocking(move || artifact_sha256(&block, stream))
                    .await
                    .unwrap()
            };
            let report = uuid::Uuid::now_v7().to_string();
            let header = pb::PutArtifactRequest {
                part: Some(pb::put_artifact_request::Part::Header(pb::ArtifactHeader {
                    report_id: report.clone(),
                    version: 1,
                    format: pb::ArtifactFormat::Pdf.into(),
                    content_type: String::new(),
                    sha256: sha256.clone(),
                })),
            };
            let chunks =
                futures::stream::iter(0..ARTIFACT_BYTES.div_ceil(CHUNK_BYTES)).map(move |index| {
                    pb::PutArtifactRequest {
                        part: Some(pb::put_artifact_request::Part::Chunk(artifact_chunk(
                            &block, stream, index,
                        ))),
                    }
                });
            let messages = futures::stream::iter([header]).chain(chunks);
            // One connection per caller, as 20 separate report workers.
            let channel = tonic::transport::Endpoint::from_shared(endpoint)
                .unwrap()
                .connect()
                .await
                .expect("connect");
            let mut request = tonic::Request::new(messages);
            treven_mesh::context::attach_context(&mut request, &token).unwrap();
            let result = DocumentsServiceClient::new(channel)
                .put_artifact(request)
                .await;
            (report, sha256, result)
        })
    });
    let results = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures::future::join_all(calls),
    )
    .await
    .expect("every stream ends: none hangs");
    let (peak_kib, after_kib) = memory_kib(pid);
    let streamed = started.elapsed();

    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut client = DocumentsServiceClient::new(channel);
    let http = reqwest::Client::new();
    let (mut stored, mut refused) = (0, 0);
    for joined in results {
        let (report, sha256, result) = joined.expect("stream task");
        match result {
            Ok(response) => {
                let response = response.into_inner();
                assert_eq!(
                    (response.size_bytes, response.sha256.as_str()),
                    (ARTIFACT_BYTES as i64, sha256.as_str())
                );
                // Readable through the public path, byte for byte.
                let mut request = tonic::Request::new(pb::PresignArtifactRequest {
                    report_id: report,
                    version: 1,
                    format: pb::ArtifactFormat::Pdf.into(),
                    download_name: String::new(),
                });
                treven_mesh::context::attach_context(&mut request, &token).unwrap();
                let url = client
                    .presign_artifact(request)
                    .await
                    .expect("presign")
                    .into_inner()
                    .url;
                let response = http.get(&url).send().await.expect("download");
                assert_eq!(response.status(), 200);
                let mut body = response.bytes_stream();
                let (mut hasher, mut size) = (sha2::Sha256::new(), 0usize);
                while let Some(bytes) = body.next().await {
                    let bytes = bytes.expect("download body");
                    size += bytes.len();
                    hasher.update(&bytes);
                }
                let downloaded: String = hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!((size, downloaded), (ARTIFACT_BYTES, sha256));
                stored += 1;
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::ResourceExhausted,
                    "refused cleanly, not reset: {status:?}"
                );
                assert!(status.message().contains("retry"), "{status:?}");
                refused += 1;
            }
        }
    }
    println!(
        "documents RSS: idle {} MiB, peak (VmHWM) {} MiB, after {} MiB, limit {RSS_LIMIT_MIB} MiB; \
         {stored} of {STREAMS} 48 MB streams stored, {refused} refused with RESOURCE_EXHAUSTED; \
         streamed in {:.1} s, verified in {:.1} s",
        idle_kib / 1024,
        peak_kib / 1024,
        after_kib / 1024,
        streamed.as_secs_f64(),
        started.elapsed().as_secs_f64() - streamed.as_secs_f64(),
    );
    assert_eq!(stored + refused, STREAMS);
    assert!(stored >= 1, "at least one artifact is stored");
    assert!(
        peak_kib / 1024 < RSS_LIMIT_MIB,
        "peak RSS {} MiB is over {RSS_LIMIT_MIB} MiB",
        peak_kib / 1024
    );
}
