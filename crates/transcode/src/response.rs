//! Response messages to proto3 JSON for the browser.
//!
//! Shapes are stable: scalar, list and map fields are always present, with
//! their defaults (`{"items": [], "nextCursor": ""}`); unset message fields
//! are left out. Enums are names, 64-bit integers strings, bytes base64,
//! well-known types in their JSON forms, names lowerCamelCase.

use bytes::Bytes;
use prost_reflect::{DynamicMessage, Kind, ReflectMessage, SerializeOptions};
use treven_mesh::ServiceError;

use crate::routes::Route;

/// The serialisation options every response uses.
pub fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .skip_default_fields(false)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .use_proto_field_name(false)
}

/// `message` as proto3 JSON with defaults.
pub fn message_json(message: &DynamicMessage) -> Result<serde_json::Value, ServiceError> {
    message
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|e| {
            ServiceError::internal(std::io::Error::other(format!(
                "{} does not serialise to JSON: {e}",
                message.descriptor().full_name()
            )))
        })
}

/// The JSON body of a response of `route` (or of one event of a server
/// stream): the whole message, or the field named by `response_body`.
pub fn response_json(
    route: &Route,
    message: &DynamicMessage,
) -> Result<serde_json::Value, ServiceError> {
    let Some(field) = route.response_body() else {
        return message_json(message);
    };
    if !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_)) {
        // An unset message field reads as its default: `{}` with defaults.
        let value = message.get_field(field);
        if let Some(inner) = value.as_message() {
            return message_json(inner);
        }
    }
    let mut whole = message_json(message)?;
    Ok(whole
        .as_object_mut()
        .and_then(|object| object.remove(field.json_name()))
        .unwrap_or(serde_json::Value::Null))
}

/// [`response_json`] as bytes, ready to send with `application/json`.
pub fn encode_response(route: &Route, message: &DynamicMessage) -> Result<Bytes, ServiceError> {
    // A whole message goes straight to bytes: building a serde_json::Value
    // first doubled the work on large replies (a report is ~20 KB of text).
    match route.response_body() {
        None => return message_bytes(message),
        Some(field)
            if !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_)) =>
        {
            let value = message.get_field(field);
            if let Some(inner) = value.as_message() {
                return message_bytes(inner);
            }
        }
        Some(_) => {}
    }
    let json = response_json(route, message)?;
    serde_json::to_vec(&json)
        .map(Bytes::from)
        .map_err(|e| ServiceError::internal(std::io::Error::other(e)))
}

/// `message` as proto3 JSON bytes with defaults, fields in descriptor order.
fn message_bytes(message: &DynamicMessage) -> Result<Bytes, ServiceError> {
    let mut out = Vec::with_capacity(prost::Message::encoded_len(message).saturating_mul(2) + 64);
    let mut serializer = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut serializer, &serialize_options())
        .map_err(|e| {
            ServiceError::internal(std::io::Error::other(format!(
                "{} does not serialise to JSON: {e}",
                message.descriptor().full_name()
            )))
        })?;
    Ok(Bytes::from(out))
}
