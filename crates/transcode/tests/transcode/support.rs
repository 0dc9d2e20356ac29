//! Transcoders for the tests and helpers to run one request through them.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use prost_reflect::{DescriptorPool, DynamicMessage};
use treven_mesh::ServiceError;
use treven_transcode::{
    MatchError, RequestLimits, Route, Transcoder, build_request, http_error_of, message_json,
};

/// The built-in Treven protos.
pub fn treven() -> &'static Transcoder {
    static TRANSCODER: OnceLock<Transcoder> = OnceLock::new();
    TRANSCODER.get_or_init(|| Transcoder::builtin().expect("the Treven routes load"))
}

/// The test-only `shapes.v1` proto, compiled with protox.
pub fn shapes() -> &'static Transcoder {
    static TRANSCODER: OnceLock<Transcoder> = OnceLock::new();
    TRANSCODER.get_or_init(|| Transcoder::from_pool(shapes_pool()).expect("the shapes routes load"))
}

/// The pool of `tests/protos/shapes/v1/shapes.proto` and its imports.
pub fn shapes_pool() -> DescriptorPool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler = protox::Compiler::new([root.join("tests/protos"), root.join("../../proto")])
        .expect("include paths exist");
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_file("shapes/v1/shapes.proto")
        .expect("shapes.proto compiles");
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
        .expect("the descriptor set decodes")
}

/// Matches `method uri` and builds the request with `body` and `limits`.
pub fn request_with(
    transcoder: &Transcoder,
    method: &str,
    uri: &str,
    body: &str,
    limits: &RequestLimits,
) -> Result<(Arc<Route>, DynamicMessage), ServiceError> {
    let method = http::Method::from_bytes(method.as_bytes()).expect("a method");
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    let matched = transcoder
        .routes()
        .find(&method, path)
        .unwrap_or_else(|e| panic!("{method} {uri}: {e:?}"));
    let message = build_request(&matched, query, body.as_bytes(), limits)?;
    Ok((Arc::clone(matched.route()), message))
}

/// [`request_with`] with the default limits.
pub fn request(
    transcoder: &Transcoder,
    method: &str,
    uri: &str,
    body: &str,
) -> Result<(Arc<Route>, DynamicMessage), ServiceError> {
    request_with(transcoder, method, uri, body, &RequestLimits::default())
}

/// The request message of `method uri body` as proto3 JSON (defaults included).
pub fn request_json(
    transcoder: &Transcoder,
    method: &str,
    uri: &str,
    body: &str,
) -> serde_json::Value {
    let (_, message) =
        request(transcoder, method, uri, body).unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    message_json(&message).expect("serialises")
}

/// The RPC `method path` resolves to, or the match error.
pub fn rpc_of(transcoder: &Transcoder, method: &str, path: &str) -> Result<String, MatchError> {
    let method = http::Method::from_bytes(method.as_bytes()).expect("a method");
    transcoder
        .routes()
        .find(&method, path)
        .map(|m| m.route().rpc().full_name().to_owned())
}

/// For a request that must fail: the HTTP status and the one field named.
pub fn rejected_field(result: Result<(Arc<Route>, DynamicMessage), ServiceError>) -> (u16, String) {
    let error = match result {
        Ok((route, message)) => panic!("{route} accepted {message:?}"),
        Err(error) => error,
    };
    let http = http_error_of(error, None);
    let fields = &http.body["error"]["details"]["fields"];
    assert_eq!(fields.as_array().map(Vec::len), Some(1), "{}", http.body);
    (
        http.status.as_u16(),
        fields[0]["field"].as_str().unwrap_or_default().to_owned(),
    )
}
