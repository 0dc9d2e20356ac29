//! Query parameters into request fields.
//!
//! `a.b=x` sets a nested field (proto or lowerCamelCase names at every
//! level); a repeated scalar field takes every value given (`tag=a&tag=b`);
//! a singular field given twice is an error; an empty value (`status=`)
//! leaves the field unset. Maps and lists of messages cannot be set from the
//! query. `+` is a space, as in HTML forms, so bytes are best sent URL-safe.

use percent_encoding::percent_decode_str;
use prost_reflect::{DynamicMessage, Kind, Value};
use treven_mesh::ServiceError;

use crate::fields::{FieldPath, well_known};
use crate::input::{QUERY, RequestLimits, set_at_path};
use crate::routes::{Route, RouteBody};
use crate::scalar::{Input, scalar};
use crate::wkt::well_known_message;

/// Sets the fields named by the query string `query` on `message`.
pub(crate) fn apply_query(
    route: &Route,
    message: &mut DynamicMessage,
    query: &str,
    limits: &RequestLimits,
) -> Result<(), ServiceError> {
    if query.len() > limits.max_query_bytes {
        return Err(ServiceError::invalid_field(
            QUERY,
            format!("is longer than {} bytes", limits.max_query_bytes),
        ));
    }
    let input = route.rpc().input();
    let mut groups: Vec<(FieldPath, Vec<String>)> = Vec::new();
    for (key, value) in parse_pairs(query, limits)? {
        if matches!(route.body(), RouteBody::Whole) {
            return Err(ServiceError::invalid_field(
                key,
                "unknown query parameter: this route takes every field from the JSON body",
            ));
        }
        let names: Vec<&str> = key.split('.').collect();
        let path = FieldPath::resolve(&input, &names)
            .map_err(|_| ServiceError::invalid_field(&key, "unknown query parameter"))?;
        if let RouteBody::Field(body) = route.body()
            && path.fields()[0] == *body
        {
            return Err(ServiceError::invalid_field(
                path.to_string(),
                "is carried by the request body, not the query string",
            ));
        }
        if route.path_fields().contains(&path) {
            return Err(ServiceError::invalid_field(
                path.to_string(),
                "is set by the URL path, not the query string",
            ));
        }
        match groups.iter_mut().find(|(known, _)| *known == path) {
            Some((_, values)) => values.push(value),
            None => groups.push((path, vec![value])),
        }
    }
    for (path, values) in groups {
        apply_values(message, &path, &values, limits)?;
    }
    Ok(())
}

fn apply_values(
    message: &mut DynamicMessage,
    path: &FieldPath,
    values: &[String],
    limits: &RequestLimits,
) -> Result<(), ServiceError> {
    let leaf = path.leaf();
    let invalid = |reason: String| ServiceError::invalid_field(path.to_string(), reason);
    if leaf.is_map() {
        return Err(invalid(
            "map fields cannot be set from the query string".into(),
        ));
    }
    let values: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let kind = leaf.kind();
    if leaf.is_list() {
        if values.len() > limits.max_repeated {
            return Err(invalid(format!(
                "has more than {} values",
                limits.max_repeated
            )));
        }
        let items = values
            .iter()
            .map(|text| text_value(&kind, text, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        return set_at_path(message, path, Value::List(items));
    }
    if values.len() > 1 {
        return Err(invalid("is given more than once".into()));
    }
    let value = text_value(&kind, values[0], false).map_err(invalid)?;
    set_at_path(message, path, value)
}

/// One value of `kind` from URL text: a scalar, an enum or a well-known type.
pub(crate) fn text_value(kind: &Kind, text: &str, in_list: bool) -> Result<Value, String> {
    match kind {
        Kind::Message(descriptor) => match well_known(descriptor) {
            Some(known) => {
                well_known_message(descriptor, &known, Input::Text(text)).map(Value::Message)
            }
            None if in_list => Err("lists of messages cannot be set from the query string".into()),
            None => Err(format!(
                "is a {} message: set its fields with dotted names (`field.subfield=`)",
                descriptor.full_name()
            )),
        },
        kind => scalar(kind, Input::Text(text)),
    }
}

/// The decoded `key=value` pairs, at most `max_query_params` of them.
fn parse_pairs(query: &str, limits: &RequestLimits) -> Result<Vec<(String, String)>, ServiceError> {
    let mut pairs = Vec::new();
    for piece in query.split('&').filter(|piece| !piece.is_empty()) {
        if pairs.len() == limits.max_query_params {
            return Err(ServiceError::invalid_field(
                QUERY,
                format!("has more than {} parameters", limits.max_query_params),
            ));
        }
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        let key = form_decode(key)
            .ok_or_else(|| ServiceError::invalid_field(QUERY, "a parameter name is not UTF-8"))?;
        if key.is_empty() {
            // `?=x`: there is no field to name, so the error is about the
            // query string as a whole.
            return Err(ServiceError::invalid_field(
                QUERY,
                "a parameter has no name",
            ));
        }
        let value = form_decode(value)
            .ok_or_else(|| ServiceError::invalid_field(&key, "is not UTF-8 once decoded"))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space.
fn form_decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violated_field(error: ServiceError) -> serde_json::Value {
        crate::errors::http_error_of(error, None).body["error"]["details"]["fields"][0]["field"]
            .clone()
    }

    #[test]
    fn a_parameter_without_a_name_is_refused_naming_the_query() {
        // Found by the transcode_request fuzz target: `?=x` used to be
        // refused as the unknown parameter "", an error naming no field.
        for query in ["=2024-12-31", "limit=1&=x", "=%FF", "="] {
            let error = parse_pairs(query, &RequestLimits::default())
                .expect_err("a nameless parameter is refused");
            assert_eq!(violated_field(error), "query", "{query}");
        }
        let pairs = parse_pairs("limit=1&&tag=a+b", &RequestLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pairs,
            [("limit".into(), "1".into()), ("tag".into(), "a b".into())]
        );
    }
}
