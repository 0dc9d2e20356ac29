//! The `google.api.http` path-template parser and the route matcher.
//!
//! Input (text): the first line is a path template; every further line is a
//! value for the next `*` or `**` of the template (`x` when lines run out).
//!
//! 1. Parsing any text never panics; a template that parses keeps its
//!    source, re-parses to itself, and has the shape the grammar promises
//!    (`**` last, variables in order and disjoint, a non-empty verb).
//! 2. A request path is built from the template and the values, and matched
//!    against a route table of that one template (over a request message
//!    synthesised with a string field for each variable): it must match,
//!    capture exactly the values put in, re-render to the path, answer 405
//!    for another method, and build a request whose fields hold the decoded
//!    values (or refuse it with a 400 only when a value is not UTF-8).

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};
use treven_gateway_fuzz::{
    assert_round_trip, decoded_path_value, render, request_segments, same_path,
};
use treven_mesh::ErrorCode;
use treven_transcode::template::{PathTemplate, Segment};
use treven_transcode::{
    BodyRule, HttpBinding, MatchError, RequestLimits, RouteTable, build_request, http_error_of,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let source = lines.next().unwrap_or_default();
    let values: Vec<&str> = lines.collect();
    let Ok(template) = PathTemplate::parse(source) else {
        return;
    };
    check_shape(source, &template);
    check_match(&template, &values);
});

fn check_shape(source: &str, template: &PathTemplate) {
    assert_eq!(template.as_str(), source);
    assert_eq!(template.to_string(), source);
    assert_eq!(PathTemplate::parse(source).as_ref(), Ok(template));
    let segments = template.segments();
    assert!(!segments.is_empty(), "{source}: no segments");
    for (index, segment) in segments.iter().enumerate() {
        match segment {
            Segment::CatchAll => assert_eq!(index + 1, segments.len(), "{source}: `**` not last"),
            Segment::Literal(text) => assert!(!text.is_empty(), "{source}: empty literal"),
            Segment::Wildcard => {}
        }
    }
    let mut end = 0;
    for variable in template.variables() {
        let range = variable.segments();
        assert!(
            range.start >= end && range.start < range.end,
            "{source}: {range:?}"
        );
        assert!(range.end <= segments.len(), "{source}: {range:?}");
        end = range.end;
        assert!(!variable.field_path().is_empty());
        assert_eq!(
            variable.is_single_segment(),
            range.len() == 1 && segments[range.start] == Segment::Wildcard
        );
    }
    if let Some(verb) = template.verb() {
        assert!(!verb.is_empty());
        assert!(source.ends_with(&format!(":{verb}")));
    }
}

/// One request path for `template`: the segments (verb not included) and,
/// for each template segment, the range of path segments it produced.
fn build_path(
    template: &PathTemplate,
    values: &[&str],
) -> (Vec<String>, Vec<std::ops::Range<usize>>) {
    let mut next = values.iter().copied().chain(std::iter::repeat("x"));
    let mut segments: Vec<String> = Vec::new();
    let mut spans = Vec::new();
    for segment in template.segments() {
        let start = segments.len();
        match segment {
            Segment::Literal(text) => segments.push(text.clone()),
            Segment::Wildcard => {
                // One non-empty segment: no `/`.
                let value: String = next.next().unwrap_or("x").replace('/', "");
                segments.push(if value.is_empty() { "x".into() } else { value });
            }
            Segment::CatchAll => {
                // Zero or more segments.
                let value = next.next().unwrap_or("");
                if !value.is_empty() {
                    segments.extend(value.split('/').map(str::to_owned));
                }
            }
        }
        spans.push(start..segments.len());
    }
    (segments, spans)
}

fn check_match(template: &PathTemplate, values: &[&str]) {
    let Some(pool) = synthetic_pool(template) else {
        return;
    };
    let Some(rpc) = pool
        .get_service_by_name("fuzz.S")
        .and_then(|s| s.methods().next())
    else {
        panic!("the synthetic service has its method");
    };
    let binding = HttpBinding {
        rpc,
        index: 0,
        method: http::Method::GET,
        template: template.as_str().to_owned(),
        body: BodyRule::None,
        response_body: None,
    };
    let table = match RouteTable::from_bindings(&[binding]) {
        Ok(table) => table,
        Err(error) => panic!("{template}: a parsed template over string fields compiles: {error}"),
    };

    let (segments, spans) = build_path(template, values);
    let mut path = format!("/{}", segments.join("/"));
    if let Some(verb) = template.verb() {
        path.push(':');
        path.push_str(verb);
    }
    let expected: Vec<String> = template
        .variables()
        .iter()
        .map(|variable| {
            let range = variable.segments();
            let from = spans[range.start].start;
            let to = spans[range.end - 1].end;
            segments[from..to].join("/")
        })
        .collect();

    let matched = match table.find(&http::Method::GET, &path) {
        Ok(matched) => matched,
        Err(error) => {
            panic!("{template}: {path:?} built from the template does not match: {error}")
        }
    };
    assert_eq!(matched.raw_values(), expected, "{template}: {path:?}");
    let rendered = render(
        template,
        matched.raw_values(),
        &request_segments(&path, template),
    );
    assert!(
        same_path(&rendered, &path, template),
        "{template}: {path:?} re-renders as {rendered:?}"
    );
    assert_eq!(
        table.find(&http::Method::POST, &path).err(),
        Some(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::GET]
        }),
        "{template}: {path:?}"
    );

    let decoded: Vec<Option<String>> = template
        .variables()
        .iter()
        .zip(&expected)
        .map(|(variable, raw)| decoded_path_value(raw, variable.is_single_segment()))
        .collect();
    match build_request(&matched, None, b"", &RequestLimits::default()) {
        Ok(message) => {
            for (variable, value) in template.variables().iter().zip(&decoded) {
                let Some(value) = value else {
                    panic!("{template}: {path:?}: a value that is not UTF-8 was accepted");
                };
                assert_eq!(
                    &string_at(&message, variable.field_path()),
                    value,
                    "{template}: {path:?}: {}",
                    variable.field_path_string()
                );
            }
            assert_round_trip(&message, template.as_str());
        }
        Err(error) => {
            assert!(
                decoded.iter().any(Option::is_none),
                "{template}: {path:?} refused: {error}"
            );
            let http = http_error_of(error, Some(&pool));
            assert_eq!(http.code, ErrorCode::ValidationError);
            assert_eq!(http.status, http::StatusCode::BAD_REQUEST);
        }
    }
}

/// The string at `path` in `message` (nested messages on the way).
fn string_at(message: &DynamicMessage, path: &[String]) -> String {
    let mut current = message.clone();
    for (depth, name) in path.iter().enumerate() {
        let value = current.get_field_by_name(name).map(|v| v.into_owned());
        match value {
            Some(Value::String(text)) if depth + 1 == path.len() => return text,
            Some(Value::Message(inner)) => current = inner,
            other => panic!("{name}: unexpected {other:?}"),
        }
    }
    String::new()
}

/// A pool with `fuzz.S/Call(fuzz.Req)`, where `Req` has a string field for
/// each variable (nested messages for dotted paths). `None` when the field
/// paths clash (`{a}` and `{a.b}`), nest deeper than 32, or the names do
/// not make a valid proto.
fn synthetic_pool(template: &PathTemplate) -> Option<DescriptorPool> {
    #[derive(Default)]
    struct Tree {
        children: Vec<(String, Tree)>,
        leaf: bool,
    }
    let mut root = Tree::default();
    for variable in template.variables() {
        // Deeper messages hit prost's decoding recursion limit (100); real
        // protos are nowhere near that.
        if variable.field_path().len() > 32 {
            return None;
        }
        let mut node = &mut root;
        for name in variable.field_path() {
            if node.leaf {
                return None;
            }
            let position = match node.children.iter().position(|(n, _)| n == name) {
                Some(position) => position,
                None => {
                    node.children.push((name.clone(), Tree::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[position].1;
        }
        if !node.children.is_empty() {
            return None;
        }
        node.leaf = true;
    }
    fn message(name: String, tree: &Tree, out: &mut Vec<DescriptorProto>) {
        let mut fields = Vec::new();
        for (number, (field, child)) in tree.children.iter().enumerate() {
            let number = i32::try_from(number + 1).unwrap_or(i32::MAX);
            let mut proto = FieldDescriptorProto {
                name: Some(field.clone()),
                number: Some(number),
                label: Some(Label::Optional as i32),
                ..Default::default()
            };
            if child.leaf {
                proto.r#type = Some(Type::String as i32);
            } else {
                let nested = format!("{name}_{number}");
                proto.r#type = Some(Type::Message as i32);
                proto.type_name = Some(format!(".fuzz.{nested}"));
                message(nested, child, out);
            }
            fields.push(proto);
        }
        out.push(DescriptorProto {
            name: Some(name),
            field: fields,
            ..Default::default()
        });
    }
    let mut messages = Vec::new();
    message("Req".into(), &root, &mut messages);
    let file = FileDescriptorProto {
        name: Some("fuzz.proto".into()),
        package: Some("fuzz".into()),
        syntax: Some("proto3".into()),
        message_type: messages,
        service: vec![ServiceDescriptorProto {
            name: Some("S".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Call".into()),
                input_type: Some(".fuzz.Req".into()),
                output_type: Some(".fuzz.Req".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] }).ok()
}
