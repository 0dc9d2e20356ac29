//! `treven serve --target documents` against the moto emulator: grpcurl can
//! list, describe and call every RPC through reflection.

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
