//! A presigned upload URL is good for exactly one key, content type, body
//! length and checksum. moto does not check presigned signatures, so this
//! runs the documents service with S3 on s3s-fs (which does, like S3) and
//! DynamoDB on moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    Moto, S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs, authed, curl_put, headers_of, org, provision,
    sdk_for, serve, test_config, upload_request,
};
use treven_mesh::Role;
use treven_proto::treven::documents::v1 as pb;

#[tokio::test]
async fn a_presigned_url_cannot_be_used_for_another_key_type_body_or_checksum() {
    let moto = Moto::start();
    let moto_sdk = moto.sdk().await;
    provision(&moto_sdk, &test_config()).await;
    let s3s = S3sFs::start();
    let s3_sdk = sdk_for(s3s.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY).await;
    let keys = treven_mesh::keys::MeshKeys::generate();
    let documents = treven_documents::build_with(
        test_config(),
        treven_documents::s3_client(&test_config(), &s3_sdk),
        aws_sdk_dynamodb::Client::new(&moto_sdk),
        &keys,
    )
    .unwrap();
    let (address, _stop) = serve(documents, &keys).await;
    let mut client = support::client(address).await;
    let analyst = support::mint(&keys, treven_mesh::Principal::Gateway, org(), Role::Analyst);

    let bytes = b"{\"victims\": 12}".to_vec();
    let create = || upload_request("data.json", "application/json", &bytes);
    let upload = client
        .create_upload(authed(&analyst, create()))
        .await
        .unwrap()
        .into_inner();
    let headers = headers_of(&upload);
    let with_header = |name: &str, value: &str| -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case(name) {
                    (k.clone(), value.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    };

    // Signed headers and path: any change breaks the signature.
    let other_key = upload.upload_url.replacen("data.json", "other.json", 1);
    assert_eq!(curl_put(&other_key, &headers, &bytes), 403, "another key");
    assert_eq!(
        curl_put(
            &upload.upload_url,
            &with_header("content-type", "text/html"),
            &bytes
        ),
        403,
        "another content type"
    );
    let forged = treven_documents::model::Sha256Hex::of(b"other").to_base64();
    assert_eq!(
        curl_put(
            &upload.upload_url,
            &with_header("x-amz-checksum-sha256", &forged),
            &bytes
        ),
        403,
        "another checksum"
    );
    let id = upload.document.clone().unwrap().id;
    let status = client
        .complete_upload(authed(
            &analyst,
            pb::CompleteUploadRequest { id: id.clone() },
        ))
        .await
        .expect_err("nothing stored");
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "no refused attempt stored anything"
    );
    assert_eq!(
        curl_put(&upload.upload_url, &headers, &bytes),
        200,
        "the declared upload works"
    );
    let done = client
        .complete_upload(authed(&analyst, pb::CompleteUploadRequest { id }))
        .await
        .unwrap();
    assert_eq!(
        done.into_inner().document.unwrap().status,
        pb::DocumentStatus::Available as i32
    );

    // Bodies that do not match the signed length or checksum are refused,
    // and even if a store kept them, completion never makes them available.
    let larger = b"{\"victims\": 12, \"more\": true}".to_vec();
    let other_bytes_same_length = b"{\"victims\": 99}".to_vec();
    for body in [larger, other_bytes_same_length] {
        let upload = client
            .create_upload(authed(&analyst, create()))
            .await
            .unwrap()
            .into_inner();
        let status = curl_put(&upload.upload_url, &headers_of(&upload), &body);
        assert!((400..500).contains(&status), "refused with {status}");
        let id = upload.document.unwrap().id;
        match client
            .complete_upload(authed(&analyst, pb::CompleteUploadRequest { id }))
            .await
        {
            Ok(done) => assert_eq!(
                done.into_inner().document.unwrap().status,
                pb::DocumentStatus::Rejected as i32
            ),
            Err(status) => assert_eq!(status.code(), tonic::Code::FailedPrecondition),
        }
    }
}
