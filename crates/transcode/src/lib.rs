//! REST/JSON ⇄ gRPC transcoding driven by descriptors.
//!
//! Everything comes from the protos' `google.api.http` rules in a
//! [`prost_reflect::DescriptorPool`] — the built-in Treven set plus any set
//! fetched from a service's reflection — so a new RPC needs no handler:
//!
//! - [`rules`]: read the rules (and `additional_bindings`) from a pool;
//! - [`template`]: parse path templates (`{id}`, `{name=orgs/*}`, `**`, `:verb`);
//! - [`routes`]: the route table and its precedence;
//! - [`request`]: path variables, query parameters and JSON body → request message;
//! - [`response`] and [`errors`]: response message / gRPC status → JSON and HTTP status;
//! - [`codec`] and [`client`]: call any RPC by descriptor over a tonic channel;
//! - [`openapi`]: the OpenAPI 3.1 document of the same routes;
//! - [`public`]: the public surface — exactly the RPCs with a rule — that
//!   every edge protocol (REST, gRPC-web, gRPC) is limited to.
//!
//! [`Transcoder`] bundles a pool with its route table.

pub mod client;
pub mod codec;
pub mod errors;
pub mod fields;
mod input;
mod json;
pub mod openapi;
pub mod public;
mod query;
pub mod request;
pub mod response;
pub mod routes;
pub mod rules;
mod scalar;
pub mod template;
mod transcoder;
mod wkt;

pub use client::{call_server_streaming, call_unary};
pub use codec::DynamicCodec;
pub use errors::{HttpError, http_error, http_error_of};
pub use fields::FieldPath;
pub use openapi::{OpenApiInfo, openapi_document};
pub use public::{PublicSurface, grpc_path};
pub use request::{RequestLimits, build_request};
pub use response::{encode_response, message_json, response_json};
pub use routes::{MatchError, Route, RouteBody, RouteError, RouteMatch, RouteTable};
pub use rules::{BodyRule, HttpBinding, RuleError};
pub use template::{PathTemplate, TemplateError};
pub use transcoder::Transcoder;
