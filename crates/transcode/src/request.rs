//! The request message of a matched route, from its path variables, query
//! string and JSON body.
//!
//! Order: the body first (`*` = the whole message, or the named field), then
//! the path variables — a body value that differs from the path is refused,
//! so a service never sees an id that disagrees with the URL — then the query
//! string (only fields neither in the path nor in the body). For `PATCH`,
//! when the request has a `google.protobuf.FieldMask update_mask` that the
//! client did not set, it is filled with the top-level fields present in the
//! JSON body (proto names, sorted; with `body: "*"` the mask itself and the
//! fields bound by the path are left out).
//!
//! Every failure is a VALIDATION_ERROR naming the proto field path (`body`
//! and `query` for the body or query string as a whole); nothing here
//! panics on client input.

use percent_encoding::percent_decode_str;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, Value};
use treven_mesh::ServiceError;

use crate::fields::well_known;
use crate::input::set_at_path;
use crate::json::{field_value, merge_object};
use crate::query::apply_query;
use crate::routes::{Route, RouteBody, RouteMatch};
use crate::scalar::{Input, scalar};

pub use crate::input::{BODY, RequestLimits};

/// Builds the request message of `matched` from the raw query string (after
/// `?`, still encoded) and the body bytes.
pub fn build_request(
    matched: &RouteMatch,
    query: Option<&str>,
    body: &[u8],
    limits: &RequestLimits,
) -> Result<DynamicMessage, ServiceError> {
    let route = matched.route();
    let input = route.rpc().input();
    let mut message = DynamicMessage::new(input.clone());
    let body_fields = apply_body(route, &mut message, body, limits)?;
    for ((path, variable), raw) in route
        .path_fields()
        .iter()
        .zip(route.template().variables())
        .zip(matched.raw_values())
    {
        let invalid = |reason: String| ServiceError::invalid_field(path.to_string(), reason);
        let text = decode_path_value(raw, variable.is_single_segment()).map_err(invalid)?;
        let value = scalar(&path.leaf().kind(), Input::Text(&text)).map_err(invalid)?;
        set_at_path(&mut message, path, value)?;
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        apply_query(route, &mut message, query, limits)?;
    }
    if route.method() == http::Method::PATCH {
        fill_update_mask(route, &mut message, &body_fields);
    }
    Ok(message)
}

/// Parses the body into `message`; returns the top-level fields present in
/// the JSON object that carries the update (for the PATCH mask).
fn apply_body(
    route: &Route,
    message: &mut DynamicMessage,
    body: &[u8],
    limits: &RequestLimits,
) -> Result<Vec<FieldDescriptor>, ServiceError> {
    let name = match route.body() {
        RouteBody::Field(field) => field.name(),
        RouteBody::None | RouteBody::Whole => BODY,
    };
    if body.len() > limits.max_body_bytes {
        return Err(ServiceError::invalid_field(
            name,
            format!("is larger than {} bytes", limits.max_body_bytes),
        ));
    }
    let blank = body.iter().all(u8::is_ascii_whitespace);
    match route.body() {
        RouteBody::None if blank => Ok(Vec::new()),
        RouteBody::None => Err(ServiceError::invalid_field(
            BODY,
            "this route takes no request body",
        )),
        _ if blank => Ok(Vec::new()),
        RouteBody::Whole => match parse_json(body, name)? {
            serde_json::Value::Object(object) => merge_object(message, &object, ""),
            _ => Err(ServiceError::invalid_field(BODY, "must be a JSON object")),
        },
        RouteBody::Field(field) => {
            let json = parse_json(body, name)?;
            match (&json, field.kind()) {
                (serde_json::Value::Null, _) => Ok(Vec::new()),
                (serde_json::Value::Object(object), Kind::Message(descriptor))
                    if !field.is_list() && !field.is_map() && well_known(&descriptor).is_none() =>
                {
                    let mut inner = DynamicMessage::new(descriptor);
                    let present = merge_object(&mut inner, object, field.name())?;
                    message.set_field(field, Value::Message(inner));
                    Ok(present)
                }
                _ => {
                    let value = field_value(field, &json, field.name())?;
                    message.set_field(field, value);
                    Ok(Vec::new())
                }
            }
        }
    }
}

fn parse_json(body: &[u8], name: &str) -> Result<serde_json::Value, ServiceError> {
    serde_json::from_slice(body)
        .map_err(|e| ServiceError::invalid_field(name, format!("is not valid JSON: {e}")))
}

/// Percent-decodes a path variable: fully for one-segment variables; others
/// keep `%2F` (and `%2f`) as written, per google.api.http reserved expansion.
fn decode_path_value(raw: &str, single_segment: bool) -> Result<String, String> {
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| "is not UTF-8 once percent-decoded".to_owned())
    };
    if single_segment {
        return decode(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = find_encoded_slash(rest) {
        out.push_str(&decode(&rest[..at])?);
        out.push_str(&rest[at..at + 3]);
        rest = &rest[at + 3..];
    }
    out.push_str(&decode(rest)?);
    Ok(out)
}

/// Byte offset of the first `%2F` or `%2f`.
fn find_encoded_slash(text: &str) -> Option<usize> {
    text.as_bytes()
        .windows(3)
        .position(|w| w[0] == b'%' && w[1] == b'2' && (w[2] == b'F' || w[2] == b'f'))
}

/// The `google.protobuf.FieldMask update_mask` of a PATCH route whose body
/// is one field (`body: "user"`): the transcoder fills it from the body when
/// the client did not send one, so the REST contract is "the members you
/// send are the update" (the OpenAPI document leaves the mask out).
pub fn body_derived_mask(route: &Route) -> Option<FieldDescriptor> {
    if route.method() != http::Method::PATCH || !matches!(route.body(), RouteBody::Field(_)) {
        return None;
    }
    let mask_field = route.rpc().input().get_field_by_name("update_mask")?;
    match mask_field.kind() {
        Kind::Message(mask_type)
            if mask_type.full_name() == "google.protobuf.FieldMask" && !mask_field.is_list() =>
        {
            Some(mask_field)
        }
        _ => None,
    }
}

/// Fills `update_mask` for PATCH when the client did not set it, on the
/// routes [`body_derived_mask`] names: with the body's populated fields
/// (AIP-134's implied mask: a member sent as `null` or at its default changes
/// nothing). A `body: "*"` route carries the mask in its body and is left as
/// the client sent it (as grpc-gateway does).
fn fill_update_mask(route: &Route, message: &mut DynamicMessage, body_fields: &[FieldDescriptor]) {
    let (Some(mask_field), RouteBody::Field(body)) = (body_derived_mask(route), route.body())
    else {
        return;
    };
    let Kind::Message(mask_type) = mask_field.kind() else {
        return;
    };
    if message.has_field(&mask_field) {
        return;
    }
    let Some(carrier) = message.get_field(body).as_message().cloned() else {
        return;
    };
    let mut paths: Vec<String> = body_fields
        .iter()
        .filter(|field| carrier.has_field(field))
        .map(|field| field.name().to_owned())
        .collect();
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return;
    }
    let mut mask = DynamicMessage::new(mask_type);
    mask.set_field_by_number(
        1,
        Value::List(paths.into_iter().map(Value::String).collect()),
    );
    message.set_field(&mask_field, Value::Message(mask));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_segment_values_keep_encoded_slashes() {
        assert_eq!(
            decode_path_value("a%2Fb/c%20d%2fe", false).as_deref(),
            Ok("a%2Fb/c d%2fe")
        );
        assert_eq!(decode_path_value("a%2Fb", true).as_deref(), Ok("a/b"));
        assert!(decode_path_value("%FF", true).is_err());
    }
}
