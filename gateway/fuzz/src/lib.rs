//! Oracles shared by the fuzz targets: small, independent re-statements of
//! what the gateway promises, to check its answers against.

use percent_encoding::percent_decode_str;
use treven_transcode::template::{PathTemplate, Segment};

/// The HTTP methods the gateway's routes use.
pub const METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
];

/// What a path variable holds once decoded: one-segment variables are fully
/// percent-decoded; the others keep `%2F`/`%2f` encoded (google.api.http
/// reserved expansion). `None` when a piece is not UTF-8 once decoded.
pub fn decoded_path_value(raw: &str, single_segment: bool) -> Option<String> {
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .ok()
            .map(|text| text.into_owned())
    };
    if single_segment {
        return decode(raw);
    }
    // Split on every encoded slash, decode the pieces, put the slashes back
    // exactly as written.
    let bytes = raw.as_bytes();
    let mut out = String::new();
    let mut start = 0;
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if bytes[i] == b'%' && bytes[i + 1] == b'2' && matches!(bytes[i + 2], b'F' | b'f') {
            out.push_str(&decode(&raw[start..i])?);
            out.push_str(&raw[i..i + 3]);
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&decode(&raw[start..])?);
    Some(out)
}

/// Renders `template` back into a request path from the raw variable values
/// of a match. Segments bound to no variable (a bare `*` or `**`) are taken
/// from `request_segments`, the matched request's segments without the verb.
pub fn render(template: &PathTemplate, raw_values: &[String], request_segments: &[&str]) -> String {
    let segments = template.segments();
    let mut pieces: Vec<String> = Vec::new();
    let mut index = 0;
    while index < segments.len() {
        if let Some((variable, raw)) = template
            .variables()
            .iter()
            .zip(raw_values)
            .find(|(variable, _)| variable.segments().start == index)
        {
            pieces.push(raw.clone());
            index = variable.segments().end;
            continue;
        }
        match &segments[index] {
            Segment::Literal(text) => pieces.push(text.clone()),
            Segment::Wildcard => {
                pieces.push(
                    request_segments
                        .get(index)
                        .copied()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            Segment::CatchAll => {
                pieces.push(request_segments.get(index..).unwrap_or(&[]).join("/"));
            }
        }
        index += 1;
    }
    let mut path = format!("/{}", pieces.join("/"));
    if let Some(verb) = template.verb() {
        path.push(':');
        path.push_str(verb);
    }
    path
}

/// Percent-decodes `text` into bytes (invalid escapes kept as written).
pub fn decode_bytes(text: &str) -> Vec<u8> {
    percent_decode_str(text).collect()
}

/// The request segments of `path` (after the leading `/`), with the `:verb`
/// of `template` taken off the last one.
pub fn request_segments<'a>(path: &'a str, template: &PathTemplate) -> Vec<&'a str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut segments: Vec<&str> = rest.split('/').collect();
    if let Some(verb) = template.verb()
        && let Some(last) = segments.last_mut()
        && let Some(stripped) = last.strip_suffix(verb).and_then(|s| s.strip_suffix(':'))
    {
        *last = stripped;
    }
    segments
}

/// Checks that `rendered` is `path`, up to percent-encoding (literals are
/// matched decoded) and the one ambiguity of an empty `**`: `/a` and `/a/`
/// both capture `""`.
pub fn same_path(rendered: &str, path: &str, template: &PathTemplate) -> bool {
    let equal = |a: &str, b: &str| a == b || decode_bytes(a) == decode_bytes(b);
    if equal(rendered, path) {
        return true;
    }
    if !template.ends_with_catch_all() {
        return false;
    }
    // `/a/` + verb rendered for a request `/a` + verb, or the reverse.
    let verb = template.verb().map(|v| format!(":{v}")).unwrap_or_default();
    let without_verb =
        |p: &str| -> String { p.strip_suffix(verb.as_str()).unwrap_or(p).to_owned() };
    let (r, p) = (without_verb(rendered), without_verb(path));
    let trimmed = |s: &str| -> String {
        let t = s.strip_suffix('/').unwrap_or(s);
        if t.is_empty() {
            "/".to_owned()
        } else {
            t.to_owned()
        }
    };
    equal(&trimmed(&r), &trimmed(&p))
}

/// Checks that `message` survives a protobuf round trip and serialises to
/// proto3 JSON, the same before and after. Compared as JSON with defaults:
/// a field set to its default is stored by `DynamicMessage` but never
/// encoded, and map order is not kept, so the messages themselves may differ
/// while meaning the same.
pub fn assert_round_trip(message: &prost_reflect::DynamicMessage, what: &str) {
    use prost::Message as _;
    use prost_reflect::{DynamicMessage, ReflectMessage as _};
    let json = |m: &DynamicMessage| match treven_transcode::message_json(m) {
        Ok(json) => json,
        Err(error) => panic!("{what}: an accepted request does not serialise to JSON: {error}"),
    };
    let encoded = message.encode_to_vec();
    let decoded = match DynamicMessage::decode(message.descriptor(), encoded.as_slice()) {
        Ok(decoded) => decoded,
        Err(error) => panic!("{what}: the encoded request does not decode: {error}"),
    };
    assert_eq!(json(message), json(&decoded), "{what}: protobuf round trip");
    let again = DynamicMessage::decode(decoded.descriptor(), decoded.encode_to_vec().as_slice());
    assert_eq!(
        again.ok().as_ref(),
        Some(&decoded),
        "{what}: second round trip"
    );
}
