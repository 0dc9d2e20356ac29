//! Response JSON shapes: defaults present, int64 as strings, enums as
//! names, `response_body`, and error bodies.

use prost_reflect::{DynamicMessage, Value};
use serde_json::json;
use treven_transcode::{encode_response, http_error, message_json, response_json};

use crate::support::{shapes, treven};

fn route(
    transcoder: &treven_transcode::Transcoder,
    method: http::Method,
    path: &str,
) -> std::sync::Arc<treven_transcode::Route> {
    std::sync::Arc::clone(
        transcoder
            .routes()
            .find(&method, path)
            .expect("route")
            .route(),
    )
}

#[test]
fn empty_lists_have_a_stable_shape() {
    let list = route(treven(), http::Method::GET, "/api/users");
    let empty = DynamicMessage::new(list.rpc().output());
    assert_eq!(
        response_json(&list, &empty).expect("json"),
        json!({"items": [], "nextCursor": ""})
    );
    assert_eq!(
        encode_response(&list, &empty).expect("bytes").as_ref(),
        br#"{"items":[],"nextCursor":""}"#
    );
}

#[test]
fn scalars_enums_and_64_bit_integers_follow_proto3_json() {
    let search = route(shapes(), http::Method::GET, "/v1/search");
    let output = search.rpc().output();
    let hit = output
        .get_field_by_name("items")
        .and_then(|f| f.kind().as_message().cloned())
        .expect("hit type");
    let mut first = DynamicMessage::new(hit);
    first.set_field_by_name("id", Value::String("h1".into()));
    let mut response = DynamicMessage::new(output);
    response.set_field_by_name("items", Value::List(vec![Value::Message(first)]));
    response.set_field_by_name("total", Value::I64(9_007_199_254_740_993));
    response.set_field_by_name("huge", Value::U64(u64::MAX));
    response.set_field_by_name("kind", Value::EnumNumber(2));
    response.set_field_by_name("blob", Value::Bytes(bytes::Bytes::from_static(b"hi")));
    assert_eq!(
        response_json(&search, &response).expect("json"),
        json!({
            "items": [{"id": "h1", "score": 0.0}],
            "nextCursor": "",
            "total": "9007199254740993",
            "kind": "HIT_KIND_PERSON",
            "counts": {},
            "blob": "aGk=",
            "huge": "18446744073709551615",
        })
    );
    // Defaults alone: every scalar, list and map, no unset message.
    let empty = DynamicMessage::new(search.rpc().output());
    assert_eq!(
        message_json(&empty).expect("json"),
        json!({
            "items": [],
            "nextCursor": "",
            "total": "0",
            "kind": "HIT_KIND_UNSPECIFIED",
            "counts": {},
            "blob": "",
            "huge": "0",
        })
    );
}

#[test]
fn response_body_sends_one_field_even_when_unset() {
    let create = route(treven(), http::Method::POST, "/api/users");
    let response = DynamicMessage::new(create.rpc().output());
    assert_eq!(
        response_json(&create, &response).expect("json"),
        json!({
            "id": "",
            "orgId": "",
            "cognitoSub": "",
            "email": "",
            "name": "",
            "role": "ROLE_UNSPECIFIED",
            "identityState": "IDENTITY_STATE_UNSPECIFIED",
        })
    );
}

#[test]
fn errors_use_the_mesh_table_and_hide_internals() {
    let not_found: tonic::Status = treven_mesh::ServiceError::not_found("report").into();
    let error = http_error(&not_found, Some(treven().pool()));
    assert_eq!(error.status, http::StatusCode::NOT_FOUND);
    assert_eq!(
        error.body,
        json!({"error": {"code": "NOT_FOUND", "message": "report not found", "details": {}}})
    );
    assert_eq!(error.error_object()["code"], "NOT_FOUND");

    let conflict: tonic::Status =
        treven_mesh::ServiceError::conflict_on("email", "already used").into();
    let error = http_error(&conflict, None);
    assert_eq!(error.status, http::StatusCode::CONFLICT);
    assert_eq!(
        error.body["error"]["details"],
        json!({"fields": [{"field": "email", "description": "already used"}]})
    );

    let internal: tonic::Status = treven_mesh::ServiceError::internal(std::io::Error::other(
        "connection to 10.0.0.5:5432 refused",
    ))
    .into();
    let error = http_error(&internal, None);
    assert_eq!(error.status, http::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error.body["error"]["code"], "INTERNAL_ERROR");
    assert!(!error.body.to_string().contains("5432"));
}

/// `google.rpc.Status` for building a status with details by hand.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

#[test]
fn pii_findings_reach_the_client_as_typed_details() {
    use prost::Message as _;

    let pool = treven().pool();
    let detected = pool
        .get_message_by_name("treven.reports.v1.PiiDetected")
        .expect("PiiDetected");
    let finding_type = detected
        .get_field_by_name("findings")
        .and_then(|f| f.kind().as_message().cloned())
        .expect("PiiFinding");
    let mut finding = DynamicMessage::new(finding_type);
    finding.set_field_by_name("id", Value::String("f1".into()));
    finding.set_field_by_name("start", Value::I64(4));
    let mut details = DynamicMessage::new(detected);
    details.set_field_by_name("findings", Value::List(vec![Value::Message(finding)]));
    let status = RpcStatus {
        code: tonic::Code::FailedPrecondition as i32,
        message: "personal data found".into(),
        details: vec![
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                // ErrorInfo { reason: "PII_DETECTED", domain: "treven" }
                value: [&[0x0a, 12][..], b"PII_DETECTED", &[0x12, 6][..], b"treven"].concat(),
            },
            prost_types::Any {
                type_url: "type.googleapis.com/treven.reports.v1.PiiDetected".into(),
                value: details.encode_to_vec(),
            },
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                value: b"\x12\x0bstack trace".to_vec(),
            },
        ],
    };
    let status = tonic::Status::with_details(
        tonic::Code::FailedPrecondition,
        "personal data found",
        status.encode_to_vec().into(),
    );
    let error = http_error(&status, Some(pool));
    assert_eq!(error.status.as_u16(), 422);
    assert_eq!(error.body["error"]["code"], "PII_DETECTED");
    let details = &error.body["error"]["details"];
    assert_eq!(details["piiDetected"]["findings"][0]["id"], "f1");
    assert_eq!(details["piiDetected"]["findings"][0]["start"], "4");
    assert!(!error.body.to_string().contains("stack trace"));
}
