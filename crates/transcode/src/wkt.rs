//! Well-known types from URL text or JSON: Timestamp (RFC 3339), Duration
//! (`"1.5s"`), FieldMask (`"a,b.c"`, lowerCamelCase or snake_case paths),
//! wrappers (the wrapped scalar), Struct/Value/ListValue (JSON) and Any
//! (JSON body only).

use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

use crate::fields::WellKnown;
use crate::scalar::{Input, scalar};

/// Builds a well-known message of type `message` from `input`.
pub(crate) fn well_known_message(
    message: &MessageDescriptor,
    kind: &WellKnown,
    input: Input<'_>,
) -> Result<DynamicMessage, String> {
    match (kind, input) {
        (WellKnown::Wrapper(inner), input) => {
            let mut wrapper = DynamicMessage::new(message.clone());
            wrapper.set_field_by_number(1, scalar(inner, input)?);
            Ok(wrapper)
        }
        (WellKnown::FieldMask, input) => match input.text() {
            Some(text) => field_mask(message, text),
            None => Err("a field mask is a string of comma-separated paths".to_owned()),
        },
        (WellKnown::Any, Input::Text(_)) => {
            Err("google.protobuf.Any cannot be given in the URL".to_owned())
        }
        (WellKnown::Timestamp | WellKnown::Duration, Input::Text(text)) => {
            from_json(message, serde_json::Value::String(text.to_owned()))
        }
        (WellKnown::Struct | WellKnown::ListValue, Input::Text(text)) => {
            let json = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
            from_json(message, json)
        }
        (WellKnown::Value, Input::Text(text)) => {
            // Any JSON value; text that is not JSON is taken as a string.
            let json = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_owned()));
            from_json(message, json)
        }
        (_, Input::Json(json)) => from_json(message, json.clone()),
    }
}

fn from_json(
    message: &MessageDescriptor,
    json: serde_json::Value,
) -> Result<DynamicMessage, String> {
    DynamicMessage::deserialize(message.clone(), json).map_err(|e| {
        let reason = e.to_string();
        match message.full_name() {
            "google.protobuf.Timestamp" => {
                format!("is not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z ({reason})")
            }
            "google.protobuf.Duration" => {
                format!("is not a duration such as \"1.5s\" ({reason})")
            }
            _ => reason,
        }
    })
}

fn field_mask(message: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let mut paths = Vec::new();
    for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut snake = String::with_capacity(path.len() + 4);
        for (index, part) in path.split('.').enumerate() {
            if part.is_empty() {
                return Err(format!("`{path}` has an empty part"));
            }
            if index > 0 {
                snake.push('.');
            }
            for c in part.chars() {
                match c {
                    'A'..='Z' => {
                        snake.push('_');
                        snake.push(c.to_ascii_lowercase());
                    }
                    'a'..='z' | '0'..='9' | '_' => snake.push(c),
                    _ => return Err(format!("`{path}` is not a field path")),
                }
            }
        }
        paths.push(Value::String(snake));
    }
    let mut mask = DynamicMessage::new(message.clone());
    mask.set_field_by_number(1, Value::List(paths));
    Ok(mask)
}
