//! What the request readers share — [`request`](crate::request) (path and
//! body), `query` and `json` all use it, and it uses none of them: the limits
//! one request may carry, the field names errors use for the body or query
//! string as a whole, and setting a value at a field path.

use prost_reflect::{DynamicMessage, Value};
use treven_mesh::ServiceError;

use crate::fields::FieldPath;

/// The field name used in errors about the query string as a whole.
pub(crate) const QUERY: &str = "query";

/// The field name used in errors about the body as a whole.
pub const BODY: &str = "body";

/// What one request may carry; the gateway sets the body limit per route
/// group and the rest once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest query string accepted, in bytes (before decoding).
    pub max_query_bytes: usize,
    /// Most `key=value` pairs in a query string.
    pub max_query_params: usize,
    /// Most values for one repeated field in a query string.
    pub max_repeated: usize,
}

impl Default for RequestLimits {
    /// 1 MiB bodies, 8 KiB query strings, 100 parameters, 100 values.
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_query_bytes: 8 << 10,
            max_query_params: 100,
            max_repeated: 100,
        }
    }
}

/// Sets `value` at `path` inside `message`, creating the messages on the way.
/// A value already there that differs, or another member of the same oneof,
/// is an error naming the path.
pub(crate) fn set_at_path(
    message: &mut DynamicMessage,
    path: &FieldPath,
    value: Value,
) -> Result<(), ServiceError> {
    let name = path.to_string();
    let (leaf, parents) = match path.fields().split_last() {
        Some(split) => split,
        None => return Err(ServiceError::invalid_field(name, "empty field path")),
    };
    let mut current = message;
    for parent in parents {
        current = match current.get_field_mut(parent).as_message_mut() {
            Some(next) => next,
            None => return Err(ServiceError::invalid_field(name, "is not inside a message")),
        };
    }
    if current.has_field(leaf) && *current.get_field(leaf) != value {
        return Err(ServiceError::invalid_field(
            name,
            "is given twice with different values (path, query or body)",
        ));
    }
    if let Some(oneof) = leaf.containing_oneof().filter(|o| !o.is_synthetic())
        && let Some(other) = oneof
            .fields()
            .find(|other| other != leaf && current.has_field(other))
    {
        return Err(ServiceError::invalid_field(
            name,
            format!("cannot be set together with `{}`", other.name()),
        ));
    }
    current.set_field(leaf, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_small_but_usable() {
        let limits = RequestLimits::default();
        assert_eq!(limits.max_body_bytes, 1 << 20);
        assert!(limits.max_query_bytes >= 2048);
        assert_eq!(QUERY, "query");
    }
}
