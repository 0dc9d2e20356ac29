//! Proto3 JSON into a `DynamicMessage`, walking the descriptor so that every
//! error names the proto field path (`scope.countries[2]`).
//!
//! Accepts lowerCamelCase and original field names; `null` leaves a field
//! at its default (except `google.protobuf.Value`, where it is a JSON null);
//! unknown fields, a field given twice (under either name) and two members
//! of one oneof are errors. Well-known types take their proto3 JSON forms.

use std::collections::HashMap;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, ReflectMessage, Value};
use serde_json::Map;
use treven_mesh::ServiceError;

use crate::fields::{field_by_any_name, well_known};
use crate::input::BODY;
use crate::scalar::{Input, scalar};
use crate::wkt::well_known_message;

/// `prefix.name`, or `name` at the top.
pub(crate) fn child_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Sets the fields of `object` on `message`, whose proto path is `prefix`
/// (empty at the top). Returns the fields present in `object`, `null`s
/// included, in the order given.
pub(crate) fn merge_object(
    message: &mut DynamicMessage,
    object: &Map<String, serde_json::Value>,
    prefix: &str,
) -> Result<Vec<FieldDescriptor>, ServiceError> {
    let descriptor = message.descriptor();
    let mut present: Vec<FieldDescriptor> = Vec::with_capacity(object.len());
    for (key, json) in object {
        let Some(field) = field_by_any_name(&descriptor, key) else {
            if key.is_empty() {
                // `{"": …}`: name the object that holds it, never "".
                let holder = if prefix.is_empty() { BODY } else { prefix };
                return Err(ServiceError::invalid_field(
                    holder,
                    "has a member with an empty name",
                ));
            }
            return Err(ServiceError::invalid_field(
                child_path(prefix, key),
                "unknown field",
            ));
        };
        let path = child_path(prefix, field.name());
        if present.contains(&field) {
            return Err(ServiceError::invalid_field(path, "is given twice"));
        }
        present.push(field.clone());
        if json.is_null() && !takes_null(&field) {
            continue;
        }
        if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic())
            && let Some(other) = oneof
                .fields()
                .find(|other| *other != field && message.has_field(other))
        {
            return Err(ServiceError::invalid_field(
                path,
                format!(
                    "cannot be set together with `{}` (one of `{}`)",
                    other.name(),
                    oneof.name()
                ),
            ));
        }
        let value = field_value(&field, json, &path)?;
        message.set_field(&field, value);
    }
    Ok(present)
}

/// The value of `field` (singular, list or map) from `json`.
pub(crate) fn field_value(
    field: &FieldDescriptor,
    json: &serde_json::Value,
    path: &str,
) -> Result<Value, ServiceError> {
    if field.is_map() {
        let serde_json::Value::Object(object) = json else {
            return Err(ServiceError::invalid_field(path, "must be a JSON object"));
        };
        let Kind::Message(entry) = field.kind() else {
            return Err(ServiceError::invalid_field(path, "is not a map"));
        };
        let key_kind = entry.map_entry_key_field().kind();
        let value_kind = entry.map_entry_value_field().kind();
        let mut map = HashMap::with_capacity(object.len());
        for (key, value) in object {
            let entry_path = format!("{path}[{key}]");
            let map_key = scalar(&key_kind, Input::Text(key))
                .ok()
                .and_then(Value::into_map_key)
                .ok_or_else(|| {
                    ServiceError::invalid_field(&entry_path, "is not a valid map key")
                })?;
            if value.is_null() {
                return Err(ServiceError::invalid_field(entry_path, "cannot be null"));
            }
            map.insert(map_key, singular(&value_kind, value, &entry_path)?);
        }
        Ok(Value::Map(map))
    } else if field.is_list() {
        let serde_json::Value::Array(items) = json else {
            return Err(ServiceError::invalid_field(path, "must be a JSON array"));
        };
        let kind = field.kind();
        let mut values = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            if item.is_null() {
                return Err(ServiceError::invalid_field(item_path, "cannot be null"));
            }
            values.push(singular(&kind, item, &item_path)?);
        }
        Ok(Value::List(values))
    } else {
        singular(&field.kind(), json, path)
    }
}

/// One value of `kind`: a message (objects recursively, well-known types by
/// their JSON form), an enum or a scalar.
pub(crate) fn singular(
    kind: &Kind,
    json: &serde_json::Value,
    path: &str,
) -> Result<Value, ServiceError> {
    match kind {
        Kind::Message(descriptor) => {
            if let Some(known) = well_known(descriptor) {
                return well_known_message(descriptor, &known, Input::Json(json))
                    .map(Value::Message)
                    .map_err(|reason| ServiceError::invalid_field(path, reason));
            }
            let serde_json::Value::Object(object) = json else {
                return Err(ServiceError::invalid_field(path, "must be a JSON object"));
            };
            let mut message = DynamicMessage::new(descriptor.clone());
            merge_object(&mut message, object, path)?;
            Ok(Value::Message(message))
        }
        Kind::Enum(descriptor)
            if descriptor.full_name() == "google.protobuf.NullValue" && json.is_null() =>
        {
            Ok(Value::EnumNumber(0))
        }
        kind => scalar(kind, Input::Json(json))
            .map_err(|reason| ServiceError::invalid_field(path, reason)),
    }
}

/// Fields for which JSON `null` is a value rather than "unset".
fn takes_null(field: &FieldDescriptor) -> bool {
    !field.is_list()
        && !field.is_map()
        && matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violated_field(error: ServiceError) -> serde_json::Value {
        crate::errors::http_error_of(error, None).body["error"]["details"]["fields"][0]["field"]
            .clone()
    }

    #[test]
    fn a_member_with_an_empty_name_names_its_object() {
        // Found by the transcode_request fuzz target: `{"": 1}` used to be
        // refused as the unknown field "", an error naming no field.
        let pool = crate::rules::builtin_pool().unwrap_or_else(|e| panic!("{e}"));
        let descriptor = pool
            .get_message_by_name("treven.reports.v1.CreateReportRequest")
            .unwrap_or_else(|| panic!("CreateReportRequest is in the pool"));
        for (body, field) in [
            (serde_json::json!({"": 1}), "body"),
            (
                serde_json::json!({"scope": {"country": "GB", "": 1}}),
                "scope",
            ),
            (serde_json::json!({"nope": 1}), "nope"),
            (serde_json::json!({"scope": {"nope": 1}}), "scope.nope"),
        ] {
            let mut message = DynamicMessage::new(descriptor.clone());
            let serde_json::Value::Object(object) = &body else {
                panic!("{body} is an object");
            };
            let error = merge_object(&mut message, object, "").expect_err("refused");
            assert_eq!(violated_field(error), field, "{body}");
        }
    }
}
