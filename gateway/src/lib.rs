//! The gateway: the only way in from outside. It verifies the Cognito JWT,
//! resolves the caller's role, mints the mesh context, rate-limits, and
//! turns REST/JSON into gRPC calls using the protos' `google.api.http` rules
//! (see the `treven-transcode` crate), with OpenAPI generated from the same
//! descriptors.

pub mod auth;
pub mod caller;
pub mod config;
pub mod connect;
pub mod docs;
pub mod drain;
pub mod error;
pub mod grpcweb;
pub mod idempotency;
pub mod identity;
pub mod metrics;
pub mod ratelimit;
pub mod reflection;
pub mod rest;
pub mod server;
pub mod shared;
pub mod state;
pub mod ws;

pub use config::GatewayConfig;
