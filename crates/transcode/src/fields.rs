//! Field paths (`a.b.c`) through request messages, and the well-known types
//! whose JSON form is not an object of their fields.

use std::fmt;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// A path of fields from a message down to one field, e.g. `user.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    fields: Vec<FieldDescriptor>,
}

impl FieldPath {
    /// Resolves `names` (proto names or lowerCamelCase JSON names) from
    /// `message`. Every field but the last must be a singular message that is
    /// not a well-known type. Errors say which part is wrong.
    pub fn resolve<S: AsRef<str>>(
        message: &MessageDescriptor,
        names: &[S],
    ) -> Result<FieldPath, String> {
        let mut fields = Vec::with_capacity(names.len());
        let mut current = message.clone();
        for (index, name) in names.iter().enumerate() {
            let name = name.as_ref();
            let field = field_by_any_name(&current, name)
                .ok_or_else(|| format!("{} has no field `{name}`", current.full_name()))?;
            if index + 1 < names.len() {
                current = match field.kind() {
                    Kind::Message(next)
                        if !field.is_list() && !field.is_map() && well_known(&next).is_none() =>
                    {
                        next
                    }
                    _ => {
                        return Err(format!(
                            "`{}` is not a message field that can hold `{}`",
                            field.name(),
                            names[index + 1].as_ref()
                        ));
                    }
                };
            }
            fields.push(field);
        }
        if fields.is_empty() {
            return Err("empty field path".to_owned());
        }
        Ok(FieldPath { fields })
    }

    /// The fields, outermost first.
    pub fn fields(&self) -> &[FieldDescriptor] {
        &self.fields
    }

    /// The field the path ends at.
    pub fn leaf(&self) -> &FieldDescriptor {
        // `resolve` never builds an empty path.
        &self.fields[self.fields.len() - 1]
    }

    /// The path with lowerCamelCase JSON names, e.g. `user.displayName`.
    pub fn json_path(&self) -> String {
        join(self.fields.iter().map(|f| f.json_name()))
    }

    /// True when `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &FieldPath) -> bool {
        self.fields.len() >= other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.full_name() == b.full_name())
    }
}

impl fmt::Display for FieldPath {
    /// The path with proto field names, e.g. `user.display_name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(self.fields.iter().map(|f| f.name())))
    }
}

fn join<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

/// The field named `name` (proto name first, then JSON name).
pub fn field_by_any_name(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// A well-known type with a special proto3 JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WellKnown {
    /// `google.protobuf.Timestamp`: RFC 3339 string.
    Timestamp,
    /// `google.protobuf.Duration`: `"1.5s"`.
    Duration,
    /// `google.protobuf.FieldMask`: `"a,b.c"` (lowerCamelCase paths).
    FieldMask,
    /// `google.protobuf.Struct`: a JSON object.
    Struct,
    /// `google.protobuf.Value`: any JSON value.
    Value,
    /// `google.protobuf.ListValue`: a JSON array.
    ListValue,
    /// `google.protobuf.Any`: an object with `@type`.
    Any,
    /// `google.protobuf.*Value` wrappers: the wrapped scalar, or null.
    Wrapper(Kind),
}

/// The well-known JSON form of `message`, if it has one.
pub fn well_known(message: &MessageDescriptor) -> Option<WellKnown> {
    let name = message.full_name().strip_prefix("google.protobuf.")?;
    Some(match name {
        "Timestamp" => WellKnown::Timestamp,
        "Duration" => WellKnown::Duration,
        "FieldMask" => WellKnown::FieldMask,
        "Struct" => WellKnown::Struct,
        "Value" => WellKnown::Value,
        "ListValue" => WellKnown::ListValue,
        "Any" => WellKnown::Any,
        "DoubleValue" | "FloatValue" | "Int64Value" | "UInt64Value" | "Int32Value"
        | "UInt32Value" | "BoolValue" | "StringValue" | "BytesValue" => {
            WellKnown::Wrapper(message.get_field(1)?.kind())
        }
        _ => return None,
    })
}

/// True for fields that hold a plain scalar or enum (no message, list, map).
pub fn is_singular_scalar(field: &FieldDescriptor) -> bool {
    !field.is_list() && !field.is_map() && !matches!(field.kind(), Kind::Message(_))
}
