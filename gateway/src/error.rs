//! Errors at the edge: one JSON shape for every failure,
//! `{"error": {"code": "NOT_FOUND", "message": "...", "details": {...}}}`,
//! with the HTTP status from the mesh error table. The shaping is the
//! transcoder's ([`treven_transcode::http_error_of`]), shared with errors
//! that come back from services; internal causes are logged, never sent.

use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use treven_mesh::{ErrorCode, ServiceError};
use treven_transcode::{HttpError, http_error_of};

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError(HttpError);

impl ApiError {
    /// An error with a safe message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::new(code, message).into()
    }

    /// UNAUTHORIZED.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "a valid bearer token is required")
    }

    /// RATE_LIMITED, retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        let mut error = Self::new(ErrorCode::RateLimited, "too many requests");
        error.0.retry_after = Some(Duration::from_secs(seconds));
        error
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        self.0.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// How long to wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self(http_error_of(error, None))
    }
}

impl From<HttpError> for ApiError {
    fn from(error: HttpError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let mut response = (
            error.status,
            [(header::CONTENT_TYPE, "application/json")],
            error.body_bytes(),
        )
            .into_response();
        if error.code == ErrorCode::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(retry) = error.retry_after
            && let Ok(value) = HeaderValue::from_str(&retry.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
