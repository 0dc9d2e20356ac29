//! The gateway: the only way in from outside. It verifies the Cognito JWT,
//! resolves the caller's role, mints the mesh context, rate-limits, and
//! turns REST/JSON into gRPC calls using the protos' `google.api.http` rules.

pub mod auth;
pub mod config;
pub mod identity;
pub mod ratelimit;

pub use config::GatewayConfig;
