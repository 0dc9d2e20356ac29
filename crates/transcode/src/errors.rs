//! gRPC statuses to HTTP errors, through the mesh error table.
//!
//! Body: `{"error": {"code": "NOT_FOUND", "message": "...", "details": {...}}}`
//! with the HTTP status of [`ErrorCode::http_status`]. `details` holds:
//! - `fields`: `[{"field", "description"}]` from `google.rpc.BadRequest`;
//! - `retryAfterSeconds` from `google.rpc.RetryInfo` (also in
//!   [`HttpError::retry_after`] for the `Retry-After` header);
//! - any other detail whose type is in the descriptor pool, as proto3 JSON
//!   under its lowerCamelCase type name (`treven.reports.v1.PiiDetected` →
//!   `piiDetected`), so PII findings reach the browser.
//!
//! INTERNAL_ERROR and UNAVAILABLE never carry the server's text or details:
//! their message is generic, whatever the upstream said.

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};
use treven_mesh::{ErrorCode, ServiceError};

use crate::response::message_json;

/// What the gateway answers for a failed call.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// The mesh error code.
    pub code: ErrorCode,
    /// `{"error": {"code", "message", "details"}}`.
    pub body: serde_json::Value,
    /// How long to wait before retrying, when the upstream said.
    pub retry_after: Option<Duration>,
}

impl HttpError {
    /// The body as JSON bytes.
    pub fn body_bytes(&self) -> Bytes {
        Bytes::from(self.body.to_string())
    }

    /// The `{"code", "message", "details"}` object alone, for the in-band
    /// error event of a stream that fails after it started.
    pub fn error_object(&self) -> serde_json::Value {
        self.body
            .get("error")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Maps `status` from any gRPC server to the HTTP error. `pool` resolves
/// extra detail types; without it only field violations and retry delays
/// are kept.
pub fn http_error(status: &tonic::Status, pool: Option<&DescriptorPool>) -> HttpError {
    let code = ErrorCode::of_status(status);
    let http_status = http::StatusCode::from_u16(code.http_status())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let (message, details, retry_after) = match code {
        ErrorCode::Internal => ("internal error".to_owned(), serde_json::Map::new(), None),
        ErrorCode::Unavailable => (
            "a dependency is unavailable, retry later".to_owned(),
            serde_json::Map::new(),
            None,
        ),
        _ => {
            let (details, retry_after) = details_json(status.details(), pool);
            (status.message().to_owned(), details, retry_after)
        }
    };
    let body = serde_json::json!({
        "error": {
            "code": code.as_str(),
            "message": message,
            "details": details,
        }
    });
    HttpError {
        status: http_status,
        code,
        body,
        retry_after,
    }
}

/// The HTTP error of an error raised in the gateway itself (for example a
/// request that does not transcode).
pub fn http_error_of(error: ServiceError, pool: Option<&DescriptorPool>) -> HttpError {
    http_error(&tonic::Status::from(error), pool)
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, prost::Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

fn details_json(
    encoded: &[u8],
    pool: Option<&DescriptorPool>,
) -> (serde_json::Map<String, serde_json::Value>, Option<Duration>) {
    let mut out = serde_json::Map::new();
    let mut retry_after = None;
    let Ok(status) = RpcStatus::decode(encoded) else {
        return (out, None);
    };
    for any in &status.details {
        let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
        match type_name {
            "google.rpc.BadRequest" => {
                let Ok(bad_request) = BadRequest::decode(any.value.as_slice()) else {
                    continue;
                };
                let fields: Vec<serde_json::Value> = bad_request
                    .field_violations
                    .into_iter()
                    .map(|v| serde_json::json!({"field": v.field, "description": v.description}))
                    .collect();
                out.insert("fields".to_owned(), fields.into());
            }
            "google.rpc.RetryInfo" => {
                let delay = RetryInfo::decode(any.value.as_slice())
                    .ok()
                    .and_then(|info| info.retry_delay)
                    .filter(|d| d.seconds >= 0 && d.nanos >= 0);
                if let Some(delay) = delay {
                    let seconds = delay.seconds as u64 + u64::from(delay.nanos > 0);
                    retry_after = Some(Duration::from_secs(seconds));
                    out.insert("retryAfterSeconds".to_owned(), seconds.into());
                }
            }
            // ErrorInfo is the code itself; DebugInfo and the rest of
            // google.rpc are for operators, never for clients.
            name if name.starts_with("google.rpc.") => {}
            name => {
                let json = pool
                    .and_then(|pool| pool.get_message_by_name(name))
                    .and_then(|descriptor| {
                        DynamicMessage::decode(descriptor, any.value.as_slice()).ok()
                    })
                    .and_then(|message| message_json(&message).ok());
                if let Some(json) = json {
                    out.insert(lower_camel(name), json);
                }
            }
        }
    }
    (out, retry_after)
}

/// `treven.reports.v1.PiiDetected` → `piiDetected`.
fn lower_camel(full_name: &str) -> String {
    let simple = full_name.rsplit('.').next().unwrap_or(full_name);
    let mut chars = simple.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_list_the_fields() {
        let error = http_error_of(ServiceError::invalid_field("limit", "too big"), None);
        assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
        assert_eq!(
            error.body,
            serde_json::json!({"error": {
                "code": "VALIDATION_ERROR",
                "message": "invalid limit: too big",
                "details": {"fields": [{"field": "limit", "description": "too big"}]},
            }})
        );
    }

    #[test]
    fn internal_text_never_leaks() {
        for status in [
            tonic::Status::internal("relation \"users\" does not exist"),
            tonic::Status::unknown("panicked at src/lib.rs"),
            tonic::Status::unavailable("dns error: tenants.treven.internal"),
        ] {
            let error = http_error(&status, None);
            let text = error.body.to_string();
            assert!(!text.contains("relation"), "{text}");
            assert!(!text.contains("panicked"), "{text}");
            assert!(!text.contains("dns"), "{text}");
            assert!(error.status.is_server_error());
        }
    }

    #[test]
    fn every_code_maps_to_its_design_status() {
        for code in ErrorCode::ALL {
            let error = http_error_of(ServiceError::new(code, "x"), None);
            assert_eq!(error.status.as_u16(), code.http_status());
            assert_eq!(error.body["error"]["code"], code.as_str());
        }
    }

    #[test]
    fn retry_info_becomes_retry_after() {
        let retry = RetryInfo {
            retry_delay: Some(prost_types::Duration {
                seconds: 2,
                nanos: 500,
            }),
        };
        let status = RpcStatus {
            code: tonic::Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: retry.encode_to_vec(),
            }],
        };
        let status = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            status.encode_to_vec().into(),
        );
        let error = http_error(&status, None);
        assert_eq!(error.status, http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(error.body["error"]["details"]["retryAfterSeconds"], 3);
    }
}
