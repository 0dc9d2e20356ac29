//! The wire adapters: the gRPC service ([`grpc`], conversions in
//! [`convert`]) and the AgentCore Runtime HTTP contract ([`runtime`]).
//! Handlers check and convert, then call [`crate::app`]; only `lib.rs`
//! mounts them.

mod convert;
pub mod grpc;
pub mod runtime;
