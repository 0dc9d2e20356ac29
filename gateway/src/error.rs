//! Errors at the edge: one JSON shape for every failure,
//! `{"error": {"code": "NOT_FOUND", "message": "...", "details": {...}}}`,
//! with the HTTP status from the mesh error table. Internal causes are
//! logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use treven_mesh::{ErrorCode, ServiceError};

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    details: serde_json::Value,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a safe message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: serde_json::json!({}),
            retry_after: None,
        }
    }

    /// UNAUTHORIZED.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "a valid bearer token is required")
    }

    /// RATE_LIMITED, retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        let mut error = Self::new(ErrorCode::RateLimited, "too many requests");
        error.retry_after = Some(seconds);
        error
    }

    /// With structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let fields: Vec<serde_json::Value> = error
            .violations()
            .iter()
            .map(|v| serde_json::json!({"field": v.field, "description": v.description}))
            .collect();
        let details = if fields.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({"fields": fields})
        };
        // Logs the cause (if any) exactly as a service would.
        let code = error.code();
        let message = match code {
            ErrorCode::Internal | ErrorCode::Unavailable => {
                let _: tonic::Status = error.into();
                if code == ErrorCode::Internal {
                    "internal error".to_owned()
                } else {
                    "a dependency is unavailable, retry later".to_owned()
                }
            }
            _ => error.message().to_owned(),
        };
        Self {
            code,
            message,
            details,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message, "details": self.details}});
        let mut response = (status, axum::Json(body)).into_response();
        if self.code == ErrorCode::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
