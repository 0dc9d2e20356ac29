//! JSON Schemas (OpenAPI 3.1 dialect) of messages, enums and fields in
//! their proto3 JSON shapes: 64-bit integers as strings, bytes as base64,
//! Timestamp as `date-time`, Duration as `"1.5s"`, wrappers nullable.
//! Messages and enums become components named by their full name; the
//! well-known types are inlined.

use std::collections::BTreeMap;

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};
use treven_mesh::validate::{FieldRules, NO_NUL_PATTERN, Rules, StringFormat, UUID_PATTERN};

use super::comments::Comments;
use crate::fields::{WellKnown, well_known};

/// The components collected while describing routes.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    pub(super) components: BTreeMap<String, Value>,
    pub(super) comments: Comments,
    /// The `buf.validate` rules of the descriptors, read on first use.
    rules: Option<Rules>,
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
        if let Some(rules) = self.rules_of(field) {
            schema = constrained(field, &rules, schema);
        }
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
            Kind::String => json!({ "type": "string", "pattern": NO_NUL_PATTERN }),
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
        let mut required = Vec::new();
        for field in descriptor.fields().filter(|f| !skip(f)) {
            let mut schema = self.field(&field);
            let rules = self.rules_of(&field);
            if rules.as_ref().is_none_or(|r| r.accepts_zero(&field)) {
                // Proto3 JSON reads `null` (or an omitted member) as the
                // field's default.
                schema = nullable(schema);
            } else {
                // Left out, the field is its default, which a rule refuses.
                required.push(field.json_name().to_owned());
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        // Unknown members are refused by the transcoder, so the schema says so.
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            schema["required"] = required.into();
        }
        // A oneof that must be set: one of its members, not null.
        let rules = self.rules_of_pool(descriptor);
        let mut must = Vec::new();
        // At most one member of a oneof (the transcoder refuses two).
        for oneof in descriptor.oneofs().filter(|o| !o.is_synthetic()) {
            let members: Vec<FieldDescriptor> = oneof.fields().filter(|f| !skip(f)).collect();
            let mut pairs = Vec::new();
            for (i, a) in members.iter().enumerate() {
                for b in &members[i + 1..] {
                    pairs.push(json!({
                        "required": [a.json_name(), b.json_name()],
                        "properties": {
                            a.json_name(): { "not": { "type": "null" } },
                            b.json_name(): { "not": { "type": "null" } },
                        },
                    }));
                }
            }
            if !pairs.is_empty() {
                must.push(json!({ "not": { "anyOf": pairs } }));
            }
        }
        for oneof in descriptor.oneofs().filter(|o| !o.is_synthetic()) {
            if !rules.is_some_and(|r| r.oneof_required(oneof.full_name())) {
                continue;
            }
            let members: Vec<Value> = oneof
                .fields()
                .filter(|f| !skip(f))
                .map(|f| {
                    json!({
                        "required": [f.json_name()],
                        "properties": { f.json_name(): { "not": { "type": "null" } } },
                    })
                })
                .collect();
            must.push(json!({ "anyOf": members }));
        }
        // Cross-field rules (`cel`), as the JSON Schema they compiled to. A
        // rule reading a field the body does not carry (bound to the path or
        // the query) cannot be stated on the body, so it is left out.
        let mut rule_notes = Vec::new();
        let message_rules = rules.map_or(&[][..], |r| r.message_rules(descriptor.full_name()));
        for rule in message_rules {
            let in_body = rule.top_fields().iter().all(|name| {
                descriptor
                    .fields()
                    .any(|f| f.json_name() == name && !skip(&f))
            });
            if in_body {
                must.push(rule.schema().clone());
                rule_notes.push(format!("{}.", rule.message.trim_end_matches('.')));
            }
        }
        if !must.is_empty() {
            schema["allOf"] = must.into();
        }
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
        for note in rule_notes {
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(&note);
        }
        if !description.is_empty() {
            schema["description"] = description.into();
        }
        schema
    }

    /// The rules of `field`, when it declares any.
    pub(super) fn rules_of(&mut self, field: &FieldDescriptor) -> Option<FieldRules> {
        let rules = self.rules.get_or_insert_with(|| {
            // A pool with a rule the mesh cannot enforce never serves (its
            // servers refuse to start), so no constraint is documented.
            Rules::from_pool(field.parent_pool()).unwrap_or_default()
        });
        rules.field(field).cloned()
    }

    /// The compiled rules of the pool `descriptor` belongs to.
    fn rules_of_pool(&mut self, descriptor: &MessageDescriptor) -> Option<&Rules> {
        Some(
            self.rules.get_or_insert_with(|| {
                Rules::from_pool(descriptor.parent_pool()).unwrap_or_default()
            }),
        )
    }

    /// Whether an empty JSON object breaks a rule of `schema` (a component
    /// `$ref` or an inline object): it has required members.
    pub(super) fn refuses_empty(&self, schema: &Value) -> bool {
        let resolved = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| self.components.get(name))
            .unwrap_or(schema);
        resolved.get("required").is_some() || resolved.get("allOf").is_some()
    }

    /// The schema of a path or query value bound to `field`, with its rules.
    pub(super) fn bound(&mut self, field: &FieldDescriptor) -> Value {
        let schema = self.kind(&field.kind());
        match self.rules_of(field) {
            Some(rules) => constrained(field, &rules, schema),
            None => schema,
        }
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

/// `schema`, or `null` (a field at its default).
fn nullable(mut schema: Value) -> Value {
    // A plain typed schema takes `null` as a second type (its other keywords
    // apply to that type only); anything else is wrapped.
    if let Some(kind) = schema
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        && schema.get("enum").is_none()
        && schema.get("const").is_none()
    {
        schema["type"] = json!([kind, "null"]);
        return schema;
    }
    let description = schema
        .as_object_mut()
        .and_then(|object| object.remove("description"));
    let mut wrapped = json!({ "anyOf": [schema, { "type": "null" }] });
    if let Some(description) = description {
        wrapped["description"] = description;
    }
    wrapped
}

/// `schema` (of a whole field: list, map or value) with the JSON Schema
/// keywords of `rules`.
fn constrained(field: &FieldDescriptor, rules: &FieldRules, mut schema: Value) -> Value {
    if rules.ignore_always {
        return schema;
    }
    if field.is_map() {
        if let Some(map) = &rules.map {
            if let Some(min) = map.min_pairs {
                schema["minProperties"] = min.into();
            }
            if let Some(max) = map.max_pairs {
                schema["maxProperties"] = max.into();
            }
        }
        if rules.required && schema.get("minProperties").is_none() {
            schema["minProperties"] = 1.into();
        }
        return schema;
    }
    if field.is_list() {
        if let Some(repeated) = &rules.repeated {
            if let Some(min) = repeated.min_items {
                schema["minItems"] = min.into();
            }
            if let Some(max) = repeated.max_items {
                schema["maxItems"] = max.into();
            }
            if repeated.unique {
                schema["uniqueItems"] = true.into();
            }
            if let Some(items) = &repeated.items {
                let inner = schema["items"].take();
                schema["items"] = value_constrained(field, items, inner);
            }
        }
        if rules.required && schema.get("minItems").is_none() {
            schema["minItems"] = 1.into();
        }
        return schema;
    }
    value_constrained(field, rules, schema)
}

/// The zero value of `field` in proto3 JSON.
fn zero_json(field: &FieldDescriptor) -> Value {
    match field.kind() {
        Kind::String | Kind::Bytes => json!(""),
        Kind::Bool => json!(false),
        Kind::Enum(descriptor) => descriptor
            .get_value(0)
            .map_or_else(|| json!(0), |v| json!(v.name())),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => json!("0"),
        Kind::Message(_) => Value::Null,
        _ => json!(0),
    }
}

/// `base` (the schema of one value) with the keywords of the value rules.
fn value_constrained(field: &FieldDescriptor, rules: &FieldRules, base: Value) -> Value {
    let mut keywords = Map::new();
    let mut all_of = Vec::new();
    if let Some(string) = &rules.value.string {
        let min = string.min_len.or(rules.required.then_some(1));
        if let Some(min) = min.filter(|m| *m > 0) {
            keywords.insert("minLength".into(), min.into());
        }
        if let Some(max) = string.max_len {
            keywords.insert("maxLength".into(), max.into());
        }
        if let Some(pattern) = &string.pattern {
            // The string's own pattern joins the no-U+0000 one of its type.
            all_of.push(json!({ "pattern": pattern.as_str() }));
        }
        if !string.allowed.is_empty() {
            keywords.insert("enum".into(), string.allowed.clone().into());
        }
        match string.format {
            Some(StringFormat::Email) => {
                keywords.insert("format".into(), "email".into());
            }
            Some(StringFormat::Uuid) => {
                keywords.insert("format".into(), "uuid".into());
                let uuid = json!({ "pattern": UUID_PATTERN });
                if keywords.contains_key("pattern") {
                    all_of.push(uuid);
                } else {
                    keywords.insert("pattern".into(), UUID_PATTERN.into());
                }
            }
            None => {}
        }
    } else if rules.required && matches!(field.kind(), Kind::String | Kind::Bytes) {
        keywords.insert("minLength".into(), 1.into());
    }
    if let Some(mask) = &rules.value.field_mask
        && !mask.allowed.is_empty()
    {
        // The transcoder reads a mask's paths in either spelling.
        let mut names: Vec<String> = mask
            .allowed
            .iter()
            .flat_map(|path| [path.clone(), lower_camel_path(path)])
            .map(|name| name.replace('.', "\\."))
            .collect();
        names.sort();
        names.dedup();
        let one = format!("({})", names.join("|"));
        keywords.insert("pattern".into(), format!("^({one}(,{one})*)?$").into());
    }
    if let Some(integer) = &rules.value.integer {
        if base.get("type").and_then(Value::as_str) == Some("integer") {
            if let Some(min) = integer.minimum() {
                keywords.insert("minimum".into(), json!(min as i64));
            }
            if let Some(max) = integer.maximum() {
                keywords.insert("maximum".into(), json!(max as i64));
            }
        } else if let Some(pattern) = decimal_range_pattern(integer.minimum(), integer.maximum()) {
            // A 64-bit integer is a JSON string: its range is a pattern.
            keywords.insert("pattern".into(), pattern.into());
        }
    }
    if let Kind::Enum(descriptor) = field.kind() {
        let mut refused: Vec<i32> = rules
            .value
            .enumeration
            .as_ref()
            .map(|e| e.refused.clone())
            .unwrap_or_default();
        if rules.required {
            refused.push(0);
        }
        let mut names: Vec<Value> = Vec::new();
        for number in refused {
            if let Some(value) = descriptor.get_value(number) {
                names.push(value.name().into());
            }
            names.push(number.into());
        }
        if !names.is_empty() {
            keywords.insert("not".into(), json!({ "enum": names }));
        }
    }
    if !all_of.is_empty() {
        keywords.insert("allOf".into(), all_of.into());
    }
    if keywords.is_empty() {
        return base;
    }
    if rules.ignore_if_zero && !rules.required {
        let mut constrained = base.clone();
        let constraints = Value::Object(keywords);
        return match constrained.as_object_mut() {
            Some(object) if !object.contains_key("$ref") => {
                object.insert(
                    "anyOf".into(),
                    json!([{ "const": zero_json(field) }, constraints]),
                );
                constrained
            }
            _ => {
                json!({ "anyOf": [{ "const": zero_json(field) }, { "allOf": [base, constraints] }] })
            }
        };
    }
    match base {
        Value::Object(mut object) if !object.contains_key("$ref") => {
            for (key, value) in keywords {
                object.insert(key, value);
            }
            Value::Object(object)
        }
        other => {
            let mut wrapped = json!({ "allOf": [other] });
            for (key, value) in keywords {
                if key == "allOf" {
                    if let (Some(list), Value::Array(more)) =
                        (wrapped["allOf"].as_array_mut(), value)
                    {
                        list.extend(more);
                    }
                } else {
                    wrapped[key] = value;
                }
            }
            wrapped
        }
    }
}

/// `a_b.c_d` as `aB.cD`, the lowerCamelCase a FieldMask's JSON uses.
fn lower_camel_path(path: &str) -> String {
    path.split('.')
        .map(|segment| {
            let mut out = String::with_capacity(segment.len());
            let mut upper = false;
            for c in segment.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A pattern matching exactly the decimal strings (leading zeros allowed,
/// as the transcoder reads them) of the integers in `min..=max`, for a
/// 64-bit integer, which proto3 JSON writes as a string. `None` when there
/// is no bound or the range reaches below zero (no Treven rule does).
fn decimal_range_pattern(min: Option<i128>, max: Option<i128>) -> Option<String> {
    let min = u64::try_from(min.unwrap_or(0)).ok()?;
    let max = match max {
        Some(max) => u64::try_from(max).ok()?,
        None if min == 0 => return None,
        None => u64::MAX,
    };
    if min > max {
        return Some("^[^\\s\\S]$".to_owned());
    }
    let alternatives: Vec<String> = decimal_range_pieces(min, max)
        .into_iter()
        .map(|(low, high)| digits_pattern(&low.to_string(), &high.to_string()))
        .collect();
    Some(format!("^0*({})$", alternatives.join("|")))
}

/// `min..=max` cut where the digits change width or run out of 9s and 0s,
/// so that each piece is a prefix, one digit range and free digits
/// (the known "regex for a numeric range" construction).
fn decimal_range_pieces(min: u64, max: u64) -> Vec<(u64, u64)> {
    let mut stops = vec![max];
    // Up from `min`: 1..=9, 10..=99, 120..=129 ... (fill the tail with 9s).
    let mut nines = 1u32;
    while let Some(stop) = fill_tail(min, nines, 9) {
        if stop < min || stop > max {
            break;
        }
        stops.push(stop);
        nines += 1;
    }
    // Down from `max`: the last pieces end at max (fill the tail with 0s).
    if let Some(next) = max.checked_add(1) {
        let mut zeros = 1u32;
        while let Some(start) = fill_tail(next, zeros, 0) {
            if start <= min {
                break;
            }
            stops.push(start - 1);
            zeros += 1;
        }
    }
    stops.sort_unstable();
    stops.dedup();
    let mut pieces = Vec::new();
    let mut start = min;
    for stop in stops {
        if stop < start {
            continue;
        }
        pieces.push((start, stop));
        match stop.checked_add(1) {
            Some(next) => start = next,
            None => break,
        }
    }
    pieces
}

/// `n` with its last `count` decimal digits set to `digit` (`None` when it
/// would overflow).
fn fill_tail(n: u64, count: u32, digit: u64) -> Option<u64> {
    let scale = 10u64.checked_pow(count)?;
    let head = n / scale;
    let tail = if digit == 9 { scale - 1 } else { 0 };
    head.checked_mul(scale)?.checked_add(tail)
}

/// The pattern of the decimals from `low` to `high`, which have the same
/// width and differ only in one digit range followed by free digits.
fn digits_pattern(low: &str, high: &str) -> String {
    let mut pattern = String::new();
    let mut free = 0;
    for (a, b) in low.chars().zip(high.chars()) {
        if a == b {
            pattern.push(a);
        } else if a == '0' && b == '9' {
            free += 1;
        } else {
            pattern.push_str(&format!("[{a}-{b}]"));
        }
    }
    if free > 0 {
        pattern.push_str(&format!("[0-9]{{{free}}}"));
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(text)
    }

    #[test]
    fn decimal_ranges_match_exactly_their_integers() {
        for (min, max) in [
            (1, 100_000_000),
            (0, 100),
            (1, 1),
            (7, 1234),
            (10, 99),
            (5, 5_000),
        ] {
            let pattern = decimal_range_pattern(Some(min), Some(max)).expect("a pattern");
            // Every number near the bounds and near each power of ten, and
            // all of them up to 2,000.
            let (min, max) = (min as u64, max as u64);
            let mut probes: Vec<u64> = (0..=2_000).collect();
            for anchor in [min, max].into_iter().chain((0..12).map(|e| 10u64.pow(e))) {
                probes.extend(anchor.saturating_sub(3)..=anchor.saturating_add(3));
            }
            probes.extend([max * 10, max * 10 + 9]);
            for n in probes {
                let inside = (min..=max).contains(&n);
                assert_eq!(
                    matches(&pattern, &n.to_string()),
                    inside,
                    "{n} in {pattern}"
                );
                if n > 0 {
                    assert_eq!(matches(&pattern, &format!("00{n}")), inside, "00{n}");
                }
            }
            assert!(!matches(&pattern, "-1"));
            assert!(!matches(&pattern, ""));
            assert!(!matches(&pattern, "1x"));
        }
        assert_eq!(decimal_range_pattern(None, None), None);
        assert_eq!(decimal_range_pattern(Some(-5), Some(5)), None);
    }
}
