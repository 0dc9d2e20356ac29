//! The runtime every Treven service is built on.
//!
//! - [`audit`]: the tenants audit log, for services without Postgres;
//! - [`aws`] (feature `aws`): AWS SDK errors classified, DynamoDB tables created;
//! - [`server`]: bootstrap with health, reflection, request spans and drain;
//! - [`context`]: the signed mesh context and the interceptor requiring it;
//! - [`deadline`]: the caller's deadline carried to the calls a handler makes;
//! - [`error`]: the one error-code table (gRPC code, HTTP status, string);
//! - [`config`]: typed `TREVEN_*` configuration that names bad variables;
//! - [`keys`]: the mesh key from config or AWS Secrets Manager;
//! - [`pagination`]: page limits and signed, org-bound cursors;
//! - [`client`]: channels with connect timeouts and per-call deadlines;
//! - [`discovery`]: channels that re-resolve DNS (Cloud Map) and balance;
//! - [`events`]: events for WebSocket clients, published through Redis;
//! - [`telemetry`]: JSON or pretty logs with trace ids, optional OTLP export;
//! - [`trace`]: W3C trace context on every hop, store/model/job spans;
//! - [`metrics`]: OpenTelemetry metrics as Prometheus text (and OTLP), RPC RED;
//! - [`tls`]: trust roots for Postgres/Redis, the mesh CA, TLS servers and clients;
//! - [`shutdown`]: SIGTERM/SIGINT handling;
//! - [`wire`]: protobuf well-known types to and from domain types.

pub mod audit;
#[cfg(feature = "aws")]
pub mod aws;
pub mod client;
pub mod config;
pub mod context;
pub mod deadline;
pub mod discovery;
pub mod error;
pub mod events;
pub mod keys;
pub mod metrics;
pub mod pagination;
pub mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod validate;
pub mod wire;

pub use context::{MeshContext, MeshKey, OrgId, Principal, Role, Signer};
pub use error::{ErrorCode, ServiceError};
pub use tokio_util::sync::CancellationToken;
