//! REST request → protobuf request message, over the real Treven protos
//! (`treven_proto::FILE_DESCRIPTOR_SET`) and their `google.api.http` rules.
//!
//! Input (text, like an HTTP request head): `METHOD /path?query`, a newline,
//! then the body. An unknown method is fuzzed as `GET`.
//!
//! Invariants, beyond "does not panic":
//! - a match is for the request's method, captures one raw value per
//!   variable, and re-renders to the request path;
//! - 404 means no method matches the path; 405 lists exactly the methods
//!   that do (sorted, never the request's own);
//! - a built request is of the RPC's input type, survives a protobuf round
//!   trip, serialises to proto3 JSON, and holds each string path variable
//!   decoded as the gateway promises;
//! - a refused request is a VALIDATION_ERROR (400) naming at least one
//!   field: client input never yields a 5xx.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use prost_reflect::{DynamicMessage, Kind, ReflectMessage as _, Value};
use treven_gateway_fuzz::{
    METHODS, assert_round_trip, decoded_path_value, render, request_segments, same_path,
};
use treven_mesh::ErrorCode;
use treven_transcode::{MatchError, RequestLimits, Transcoder, build_request, http_error_of};

static TRANSCODER: LazyLock<Transcoder> = LazyLock::new(|| match Transcoder::builtin() {
    Ok(transcoder) => transcoder,
    Err(error) => panic!("the built-in protos load: {error}"),
});

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (method, target) = head.split_once(' ').unwrap_or(("GET", head));
    let method = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    check(&method, path, query, body);
});

fn check(method: &http::Method, path: &str, query: Option<&str>, body: &[u8]) {
    let transcoder = &*TRANSCODER;
    let routes = transcoder.routes();
    let matched = match routes.find(method, path) {
        Ok(matched) => matched,
        Err(MatchError::NotFound) => {
            for other in METHODS {
                assert!(
                    routes.find(&other, path).is_err(),
                    "{method} {path:?} is 404 but {other} matches"
                );
            }
            return;
        }
        Err(MatchError::MethodNotAllowed { allowed }) => {
            assert!(!allowed.is_empty());
            assert!(!allowed.contains(method), "{method} {path:?}: {allowed:?}");
            assert!(allowed.is_sorted_by(|a, b| a.as_str() <= b.as_str()));
            for other in &allowed {
                assert!(
                    routes.find(other, path).is_ok(),
                    "{method} {path:?}: {other} is allowed but does not match"
                );
            }
            for other in METHODS.iter().filter(|m| !allowed.contains(m)) {
                assert!(
                    other == method || routes.find(other, path).is_err(),
                    "{method} {path:?}: {other} matches but is not in Allow"
                );
            }
            return;
        }
    };
    let route = matched.route();
    let template = route.template();
    assert_eq!(route.method(), method);
    assert_eq!(matched.raw_values().len(), template.variables().len());
    assert_eq!(route.path_fields().len(), template.variables().len());
    let rendered = render(
        template,
        matched.raw_values(),
        &request_segments(path, template),
    );
    assert!(
        same_path(&rendered, path, template),
        "{method} {path:?} matched {route} but re-renders as {rendered:?}"
    );

    let limits = RequestLimits::default();
    match build_request(&matched, query, body, &limits) {
        Ok(message) => {
            let input = route.rpc().input();
            assert_eq!(message.descriptor(), input);
            assert_round_trip(&message, &route.to_string());
            for ((field, variable), raw) in route
                .path_fields()
                .iter()
                .zip(template.variables())
                .zip(matched.raw_values())
            {
                if field.leaf().kind() != Kind::String {
                    continue;
                }
                let expected = decoded_path_value(raw, variable.is_single_segment());
                let Some(expected) = expected else {
                    panic!("{route}: {field} = {raw:?} is not UTF-8 but was accepted");
                };
                assert_eq!(
                    string_at(&message, field.fields()),
                    expected,
                    "{route}: {field}"
                );
            }
        }
        Err(error) => {
            let http = http_error_of(error, Some(transcoder.pool()));
            assert!(
                http.status.is_client_error(),
                "{method} {path:?}: {} {}",
                http.status,
                http.body
            );
            assert_eq!(http.code, ErrorCode::ValidationError, "{}", http.body);
            let fields = http.body["error"]["details"]["fields"].as_array();
            assert!(
                fields.is_some_and(|fields| !fields.is_empty()
                    && fields
                        .iter()
                        .all(|f| f["field"].as_str().is_some_and(|name| !name.is_empty()))),
                "a validation error names its fields: {}",
                http.body
            );
        }
    }
}

/// The string at the end of `fields` in `message`.
fn string_at(message: &DynamicMessage, fields: &[prost_reflect::FieldDescriptor]) -> String {
    let mut current = message.clone();
    for (depth, field) in fields.iter().enumerate() {
        match current.get_field(field).into_owned() {
            Value::String(text) if depth + 1 == fields.len() => return text,
            Value::Message(inner) => current = inner,
            other => panic!("{}: unexpected {other:?}", field.name()),
        }
    }
    String::new()
}
