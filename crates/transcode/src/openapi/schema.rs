//! JSON Schemas (OpenAPI 3.1 dialect) of messages, enums and fields in
//! their proto3 JSON shapes: 64-bit integers as strings, bytes as base64,
//! Timestamp as `date-time`, Duration as `"1.5s"`, wrappers nullable.
//! Messages and enums become components named by their full name; the
//! well-known types are inlined.

use std::collections::BTreeMap;

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};

use super::comments::Comments;
use crate::fields::{WellKnown, well_known};

/// The components collected while describing routes.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    pub(super) components: BTreeMap<String, Value>,
    pub(super) comments: Comments,
}

/// A `$ref` to a component schema.
pub(super) fn component_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

impl Schemas {
    /// The schema of `field` (list, map or singular), with its comment.
    pub(super) fn field(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            match field.kind() {
                Kind::Message(entry) => json!({
                    "type": "object",
                    "additionalProperties": self.kind(&entry.map_entry_value_field().kind()),
                }),
                _ => json!({ "type": "object" }),
            }
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind(&field.kind()) })
        } else {
            self.kind(&field.kind())
        };
        if let Some(comment) = self.comments.of(&field.parent_file(), field.path())
            && let Some(object) = schema.as_object_mut()
        {
            object.insert("description".into(), comment.into());
        }
        schema
    }

    /// The schema of one value of `kind`.
    pub(super) fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double => json!({ "type": "number", "format": "double" }),
            Kind::Float => json!({ "type": "number", "format": "float" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" })
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]+$" })
            }
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Enum(descriptor) if descriptor.full_name() == "google.protobuf.NullValue" => {
                json!({ "type": "null" })
            }
            Kind::Enum(descriptor) => self.enumeration(descriptor),
            Kind::Message(descriptor) => self.message(descriptor),
        }
    }

    /// A `$ref` to the component of `descriptor` (added on first use), or
    /// the inline schema of a well-known type.
    pub(super) fn message(&mut self, descriptor: &MessageDescriptor) -> Value {
        if let Some(known) = well_known(descriptor) {
            return self.well_known(&known);
        }
        let name = descriptor.full_name().to_owned();
        if !self.components.contains_key(&name) {
            // Placeholder first: recursive messages refer to themselves.
            self.components.insert(name.clone(), Value::Null);
            let schema = self.object(descriptor, &|_| false);
            self.components.insert(name.clone(), schema);
        }
        component_ref(&name)
    }

    /// The object schema of `descriptor` without the fields `skip` names.
    pub(super) fn object(
        &mut self,
        descriptor: &MessageDescriptor,
        skip: &dyn Fn(&FieldDescriptor) -> bool,
    ) -> Value {
        let mut properties = serde_json::Map::new();
        for field in descriptor.fields().filter(|f| !skip(f)) {
            properties.insert(field.json_name().to_owned(), self.field(&field));
        }
        let mut schema = json!({ "type": "object", "properties": properties });
        let mut description = self
            .comments
            .of(&descriptor.parent_file(), descriptor.path())
            .unwrap_or_default();
        for oneof in descriptor.oneofs().filter(|o| !o.is_synthetic()) {
            let members: Vec<String> = oneof
                .fields()
                .map(|f| format!("`{}`", f.json_name()))
                .collect();
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(&format!("At most one of {} is set.", members.join(", ")));
        }
        if !description.is_empty() {
            schema["description"] = description.into();
        }
        schema
    }

    fn enumeration(&mut self, descriptor: &EnumDescriptor) -> Value {
        let name = descriptor.full_name().to_owned();
        if !self.components.contains_key(&name) {
            let names: Vec<String> = descriptor.values().map(|v| v.name().to_owned()).collect();
            let mut lines = Vec::new();
            if let Some(comment) = self
                .comments
                .of(&descriptor.parent_file(), descriptor.path())
            {
                lines.push(comment);
                lines.push(String::new());
            }
            for value in descriptor.values() {
                let comment = self
                    .comments
                    .of(&value.parent_file(), value.path())
                    .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                lines.push(
                    format!("- `{}`: {comment}", value.name())
                        .trim_end()
                        .to_owned(),
                );
            }
            lines.push(String::new());
            lines.push("Input also accepts the value's number.".to_owned());
            let schema = json!({
                "type": "string",
                "enum": names,
                "description": lines.join("\n"),
            });
            self.components.insert(name.clone(), schema);
        }
        component_ref(&name)
    }

    fn well_known(&mut self, known: &WellKnown) -> Value {
        match known {
            WellKnown::Timestamp => json!({ "type": "string", "format": "date-time" }),
            WellKnown::Duration => json!({
                "type": "string",
                "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
                "examples": ["1.5s"],
            }),
            WellKnown::FieldMask => json!({
                "type": "string",
                "description": "Comma-separated field paths, e.g. `name,role`.",
            }),
            WellKnown::Struct => json!({ "type": "object", "additionalProperties": true }),
            WellKnown::Value => json!({ "description": "Any JSON value." }),
            WellKnown::ListValue => json!({ "type": "array", "items": {} }),
            WellKnown::Any => json!({
                "type": "object",
                "properties": { "@type": { "type": "string" } },
                "required": ["@type"],
                "additionalProperties": true,
            }),
            WellKnown::Wrapper(inner) => {
                let mut schema = self.kind(inner);
                if let Some(kind) = schema
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                {
                    schema["type"] = json!([kind, "null"]);
                }
                schema
            }
        }
    }
}
