//! Integration tests of the transcoder: the real Treven routes, every rule
//! shape on a test-only proto, response shapes, the OpenAPI document, and
//! calls by descriptor through a real tonic server. One binary, so the
//! heavy dependencies are linked once.

mod calls;
mod openapi;
mod responses;
mod shapes;
mod support;
mod treven_routes;
