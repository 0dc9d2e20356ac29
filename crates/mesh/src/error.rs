//! The one error-code table of the platform.
//!
//! Every error a service returns carries an [`ErrorCode`]. The code decides
//! the gRPC status code, the HTTP status the gateway answers with, and the
//! stable string clients match on (`"NOT_FOUND"`). The string travels in the
//! status details as `google.rpc.ErrorInfo.reason` (domain `treven`), so the
//! gateway can recover the exact code even where two codes share a gRPC code.
//!
//! Internal detail (SQL, SDK messages) never leaves the process: it is logged
//! with its cause chain and replaced by a generic message.

use std::collections::HashMap;
use std::fmt;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo.domain` of every Treven error.
pub const ERROR_DOMAIN: &str = "treven";

/// A stable, client-visible error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No valid credentials (401).
    Unauthorized,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// No such resource in the caller's organisation (404).
    NotFound,
    /// The request is malformed; details name the fields (400).
    ValidationError,
    /// The resource already exists or changed concurrently (409).
    Conflict,
    /// The resource is not in a state that allows this (409), e.g. an export
    /// of a report that is not approved.
    FailedPrecondition,
    /// Personal data found; the write is blocked until each finding is
    /// redacted or kept with a justification (422).
    PiiDetected,
    /// Too many requests (429).
    RateLimited,
    /// A dependency is down; retrying later may succeed (503).
    Unavailable,
    /// A bug or an unexpected failure (500).
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::ValidationError,
        ErrorCode::Conflict,
        ErrorCode::FailedPrecondition,
        ErrorCode::PiiDetected,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The stable string clients see in `{"error": {"code": ...}}`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::PiiDetected => "PII_DETECTED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL_ERROR",
        }
    }

    /// The gRPC status code.
    pub const fn grpc_code(self) -> Code {
        match self {
            ErrorCode::Unauthorized => Code::Unauthenticated,
            ErrorCode::Forbidden => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::ValidationError => Code::InvalidArgument,
            ErrorCode::Conflict => Code::AlreadyExists,
            ErrorCode::FailedPrecondition | ErrorCode::PiiDetected => Code::FailedPrecondition,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// The HTTP status the gateway answers with.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::ValidationError => 400,
            ErrorCode::Conflict | ErrorCode::FailedPrecondition => 409,
            ErrorCode::PiiDetected => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Parses the stable string back (`ErrorInfo.reason`).
    pub fn from_reason(reason: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == reason)
    }

    /// The code of a status received from any gRPC server: the `ErrorInfo`
    /// reason when it is a Treven error, else the closest code for its gRPC
    /// code (a status from a proxy or a library has no details).
    pub fn of_status(status: &tonic::Status) -> ErrorCode {
        let details = status.get_error_details();
        if let Some(code) = details
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
            .and_then(|info| ErrorCode::from_reason(&info.reason))
        {
            return code;
        }
        // A status made in this process from a transport failure carries the
        // failure as its source (one received from a server never does):
        // the connection to the upstream broke mid-call, an outage rather
        // than a bug.
        if std::error::Error::source(status).is_some()
            && matches!(status.code(), Code::Unknown | Code::Internal)
        {
            return ErrorCode::Unavailable;
        }
        match status.code() {
            Code::Unauthenticated => ErrorCode::Unauthorized,
            Code::PermissionDenied => ErrorCode::Forbidden,
            Code::NotFound => ErrorCode::NotFound,
            Code::InvalidArgument | Code::OutOfRange => ErrorCode::ValidationError,
            Code::AlreadyExists | Code::Aborted => ErrorCode::Conflict,
            Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            Code::ResourceExhausted => ErrorCode::RateLimited,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid request field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's proto name, e.g. `email`, `user.name`.
    pub field: String,
    /// What is wrong, for a person to read.
    pub description: String,
}

/// An error on its way to a client: a code, a safe message, optional field
/// violations, and (never sent) the cause.
#[derive(Debug)]
pub struct ServiceError {
    code: ErrorCode,
    message: String,
    violations: Vec<FieldViolation>,
    source: Option<anyhow::Error>,
}

impl ServiceError {
    /// A status another service answered, as an error for our own caller:
    /// its validation, not-found, conflict, precondition, permission and
    /// rate-limit answers pass through with their message; an outage is
    /// UNAVAILABLE; anything else (our token refused, a bug over there) is
    /// INTERNAL, its message kept in the logged cause only.
    pub fn from_remote(service: &str, status: &tonic::Status) -> ServiceError {
        let code = ErrorCode::of_status(status);
        match code {
            ErrorCode::NotFound
            | ErrorCode::ValidationError
            | ErrorCode::Conflict
            | ErrorCode::FailedPrecondition
            | ErrorCode::PiiDetected
            | ErrorCode::Forbidden
            | ErrorCode::RateLimited => ServiceError::new(code, status.message().to_owned()),
            ErrorCode::Unavailable => {
                ServiceError::unavailable(anyhow::anyhow!("{service}: {}", status.message()))
            }
            _ => ServiceError::internal(anyhow::anyhow!(
                "{service} answered {code}: {}",
                status.message()
            )),
        }
    }

    /// An error with a client-safe message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            violations: Vec::new(),
            source: None,
        }
    }

    /// VALIDATION_ERROR naming one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let violation = FieldViolation {
            field: field.into(),
            description: description.into(),
        };
        Self {
            code: ErrorCode::ValidationError,
            message: format!("invalid {}: {}", violation.field, violation.description),
            violations: vec![violation],
            source: None,
        }
    }

    /// CONFLICT naming the field that clashes.
    pub fn conflict_on(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut error = Self::invalid_field(field, description);
        error.code = ErrorCode::Conflict;
        error.message = "already exists".to_owned();
        error
    }

    /// NOT_FOUND for a resource kind.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// FORBIDDEN with the reason.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// UNAVAILABLE caused by `source` (logged, not sent).
    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "a dependency is unavailable, retry later",
        )
        .with_source(source)
    }

    /// INTERNAL_ERROR caused by `source` (logged, not sent).
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorCode::Internal, "internal error").with_source(source)
    }

    /// Attaches the cause, which is logged but never sent.
    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Adds another field violation.
    pub fn with_violation(
        mut self,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field violations.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.violations
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|source| source.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        if let Some(source) = &error.source {
            // Logs keep the whole chain; the client gets only the safe message.
            match error.code {
                ErrorCode::Internal => {
                    tracing::error!(code = %error.code, error = ?source, "request failed")
                }
                _ => tracing::warn!(code = %error.code, error = ?source, "request failed"),
            }
        }
        let mut details = ErrorDetails::new();
        details.set_error_info(error.code.as_str(), ERROR_DOMAIN, HashMap::new());
        for violation in &error.violations {
            details.add_bad_request_violation(&violation.field, &violation.description);
        }
        tonic::Status::with_error_details(error.code.grpc_code(), error.message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_a_status() {
        for code in ErrorCode::ALL {
            let status: tonic::Status = ServiceError::new(code, "x").into();
            assert_eq!(status.code(), code.grpc_code());
            assert_eq!(ErrorCode::of_status(&status), code, "{code}");
        }
    }

    #[test]
    fn http_statuses_follow_the_design_table() {
        let table = [
            ("UNAUTHORIZED", 401),
            ("FORBIDDEN", 403),
            ("NOT_FOUND", 404),
            ("VALIDATION_ERROR", 400),
            ("CONFLICT", 409),
            ("PII_DETECTED", 422),
            ("RATE_LIMITED", 429),
            ("UNAVAILABLE", 503),
            ("INTERNAL_ERROR", 500),
        ];
        for (name, http) in table {
            let code = ErrorCode::from_reason(name).expect(name);
            assert_eq!(code.http_status(), http, "{name}");
        }
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let status: tonic::Status =
            ServiceError::internal(anyhow::anyhow!("relation \"users\" does not exist")).into();
        assert_eq!(status.message(), "internal error");
        assert!(!format!("{status:?}").contains("relation"));
    }

    #[test]
    fn field_violations_travel_as_bad_request() {
        let status: tonic::Status =
            ServiceError::invalid_field("email", "not an e-mail address").into();
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations[0].field, "email");
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[test]
    fn a_broken_connection_is_unavailable_not_internal() {
        let mut broken = tonic::Status::unknown("transport error");
        broken.set_source(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(ErrorCode::of_status(&broken), ErrorCode::Unavailable);
        // The same code received from a server is a server's bug.
        assert_eq!(
            ErrorCode::of_status(&tonic::Status::unknown("transport error")),
            ErrorCode::Internal
        );
    }

    #[test]
    fn plain_grpc_statuses_map_to_the_closest_code() {
        assert_eq!(
            ErrorCode::of_status(&tonic::Status::unavailable("x")),
            ErrorCode::Unavailable
        );
        assert_eq!(
            ErrorCode::of_status(&tonic::Status::unknown("x")),
            ErrorCode::Internal
        );
    }
}
