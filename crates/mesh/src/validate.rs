//! Request validation declared in the protos with `buf.validate`
//! (protovalidate) rules, enforced once for every RPC of every mesh server.
//!
//! [`ValidateLayer`] sits in front of each service's handlers: it decodes the
//! request message against the Treven descriptors, checks the rules, and
//! answers INVALID_ARGUMENT (`VALIDATION_ERROR`) with one `BadRequest` field
//! violation per broken rule before the handler runs. Handlers keep only the
//! checks that need the store or other domain knowledge.
//!
//! # Why an interpreter of our own
//!
//! The maintained Rust implementation, `prost-protovalidate`, compiles
//! `validate.proto` with `prost-build`, which needs a system `protoc` (this
//! workspace builds its protos with `protox`, pure Rust, and has none), and
//! brings a CEL interpreter the protos do not need. The rules below are
//! small, read from the same descriptors the gateway uses (so the OpenAPI
//! document is generated from the very same [`FieldRules`]), and
//! [`Rules::from_pool`] refuses any rule it does not implement, so a proto
//! cannot declare a rule that is silently ignored.
//!
//! # Supported rules
//!
//! - field: `required`, `ignore` (`IGNORE_IF_ZERO_VALUE`, `IGNORE_ALWAYS`);
//! - `string`: `min_len`, `max_len`, `len`, `max_bytes`, `pattern`, `in`,
//!   `email`, `uuid`;
//! - `int32`, `int64`, `uint32`, `uint64`: `gt`, `gte`, `lt`, `lte`;
//! - `enum`: `defined_only`, `in`, `not_in`;
//! - `bytes`: `min_len`, `max_len`;
//! - `field_mask`: `in` (every path of the mask is one of these);
//! - `repeated`: `min_items`, `max_items`, `unique`, `items` (any rule above);
//! - `map`: `min_pairs`, `max_pairs`;
//! - oneof: `required`;
//! - message: `cel`, in the subset of CEL described in [`cel`] (cross-field
//!   rules: "a kept finding needs a justification"), each rule also
//!   rendered as JSON Schema for the OpenAPI document.
//!
//! One rule holds for every string of every request without being declared:
//! it must not contain U+0000 (Postgres cannot store it; the OpenAPI document
//! states the rule on every string).
//!
//! Semantics follow protovalidate: a field with presence (message, `optional`,
//! oneof member) is checked only when set; a plain scalar is checked even at
//! its zero value unless `ignore = IGNORE_IF_ZERO_VALUE`; `required` means
//! set (non-zero, non-empty). Nested messages are validated recursively.
//! Client-streaming RPCs and compressed frames are passed through unchecked
//! (no mesh server accepts compression).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{LazyLock, OnceLock};
use std::task::{Context, Poll};

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MethodDescriptor,
    ReflectMessage, Value,
};

use crate::error::{FieldViolation, ServiceError};

pub mod cel;

pub use cel::MessageRule;

/// Full name of the field option holding a field's rules.
pub const FIELD_RULES_EXTENSION: &str = "buf.validate.field";
/// Full name of the oneof option holding a oneof's rules.
pub const ONEOF_RULES_EXTENSION: &str = "buf.validate.oneof";
/// Full name of the message option holding a message's rules.
pub const MESSAGE_RULES_EXTENSION: &str = "buf.validate.message";

/// Largest request body the layer buffers to validate (the services' own
/// limits are lower; tonic enforces them after).
const MAX_BUFFERED_BYTES: usize = 16 * 1024 * 1024;

/// Nested messages deeper than this are not descended into (recursive
/// messages end; the services refuse such inputs anyway).
const MAX_DEPTH: usize = 32;

/// A proto declares a rule this interpreter does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedRule {
    /// The field, oneof or message that declares it.
    pub element: String,
    /// The rule, e.g. `string.hostname` or `cel`.
    pub rule: String,
}

impl fmt::Display for UnsupportedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} declares buf.validate rule `{}`, which the mesh does not implement",
            self.element, self.rule
        )
    }
}

impl std::error::Error for UnsupportedRule {}

/// A string format rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    /// `email`: an address as the `email_address` crate accepts it.
    Email,
    /// `uuid`: 36 characters, hyphenated, hex digits in either case.
    Uuid,
}

/// Rules on a string value.
#[derive(Debug, Clone, Default)]
pub struct StringRules {
    /// `min_len`, in characters.
    pub min_len: Option<u64>,
    /// `max_len`, in characters.
    pub max_len: Option<u64>,
    /// `max_bytes`, in UTF-8 bytes.
    pub max_bytes: Option<u64>,
    /// `pattern` (RE2 syntax, unanchored).
    pub pattern: Option<Pattern>,
    /// `in`: the only values allowed, when not empty.
    pub allowed: Vec<String>,
    /// `email` or `uuid`.
    pub format: Option<StringFormat>,
}

/// A regular expression of a rule (`string.pattern`, CEL `matches()`):
/// its syntax is checked when the rules compile, so a proto with a broken
/// pattern still fails at start-up, but it is built on its first match.
/// Building every pattern of every proto was a third of the rules' start-up
/// CPU (#18, row 8), and a process matches only the few its own calls use.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: OnceLock<Option<regex::Regex>>,
}

impl Pattern {
    /// Checks `source`'s syntax (RE2, as the `regex` crate reads it). Only
    /// the syntax: what building finds beyond it (an unknown Unicode class,
    /// the size limit) makes the pattern match nothing, and the test that
    /// builds every pattern of the protos finds it first.
    pub fn new(source: String) -> Result<Self, String> {
        regex_syntax::ast::parse::Parser::new()
            .parse(&source)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            source,
            regex: OnceLock::new(),
        })
    }

    /// The expression as the proto wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches (anywhere: patterns are unanchored). A pattern
    /// whose syntax passed but that cannot be built (over the `regex`
    /// crate's size limit; the tests build every pattern of the protos)
    /// matches nothing, so the value is refused rather than let through.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex
            .get_or_init(|| match regex::Regex::new(&self.source) {
                Ok(regex) => Some(regex),
                Err(error) => {
                    tracing::error!(pattern = %self.source, %error, "a rule's pattern cannot be built");
                    None
                }
            })
            .as_ref()
            .is_some_and(|regex| regex.is_match(text))
    }

    /// Builds the regex now (what [`Pattern::is_match`] does on first use),
    /// returning the error; for tests that every pattern builds.
    pub fn build(&self) -> Result<(), regex::Error> {
        regex::Regex::new(&self.source).map(drop)
    }
}

/// Rules on an integer value (any of `int32`, `int64`, `uint32`, `uint64`).
#[derive(Debug, Clone, Copy, Default)]
pub struct IntegerRules {
    /// `gt`.
    pub gt: Option<i128>,
    /// `gte`.
    pub gte: Option<i128>,
    /// `lt`.
    pub lt: Option<i128>,
    /// `lte`.
    pub lte: Option<i128>,
}

impl IntegerRules {
    /// The smallest value allowed, when bounded below.
    pub fn minimum(&self) -> Option<i128> {
        match (self.gte, self.gt) {
            (Some(gte), Some(gt)) => Some(gte.max(gt + 1)),
            (Some(gte), None) => Some(gte),
            (None, Some(gt)) => Some(gt + 1),
            (None, None) => None,
        }
    }

    /// The largest value allowed, when bounded above.
    pub fn maximum(&self) -> Option<i128> {
        match (self.lte, self.lt) {
            (Some(lte), Some(lt)) => Some(lte.min(lt - 1)),
            (Some(lte), None) => Some(lte),
            (None, Some(lt)) => Some(lt - 1),
            (None, None) => None,
        }
    }
}

/// Rules on an enum value.
#[derive(Debug, Clone, Default)]
pub struct EnumRules {
    /// `defined_only`: numbers outside the enum are refused.
    pub defined_only: bool,
    /// `in`: the only numbers allowed, when not empty.
    pub allowed: Vec<i32>,
    /// `not_in`: numbers refused.
    pub refused: Vec<i32>,
}

/// Rules on a bytes value.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesRules {
    /// `min_len`.
    pub min_len: Option<u64>,
    /// `max_len`.
    pub max_len: Option<u64>,
}

/// Rules on a `google.protobuf.FieldMask` value.
#[derive(Debug, Clone, Default)]
pub struct FieldMaskRules {
    /// `in`: the only paths a mask may name (snake_case, as in the proto).
    pub allowed: Vec<String>,
}

/// Rules on the value(s) of a field, by the field's type.
#[derive(Debug, Clone, Default)]
pub struct ValueRules {
    /// `string` rules.
    pub string: Option<StringRules>,
    /// Integer rules.
    pub integer: Option<IntegerRules>,
    /// `enum` rules.
    pub enumeration: Option<EnumRules>,
    /// `bytes` rules.
    pub bytes: Option<BytesRules>,
    /// `field_mask` rules.
    pub field_mask: Option<FieldMaskRules>,
}

/// `repeated` rules.
#[derive(Debug, Clone, Default)]
pub struct RepeatedRules {
    /// `min_items`.
    pub min_items: Option<u64>,
    /// `max_items`.
    pub max_items: Option<u64>,
    /// `unique`.
    pub unique: bool,
    /// `items`: rules of every element.
    pub items: Option<Box<FieldRules>>,
}

/// `map` rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapRules {
    /// `min_pairs`.
    pub min_pairs: Option<u64>,
    /// `max_pairs`.
    pub max_pairs: Option<u64>,
}

/// Every rule declared on one field.
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    /// `required`.
    pub required: bool,
    /// `ignore = IGNORE_IF_ZERO_VALUE`: the zero value skips every rule.
    pub ignore_if_zero: bool,
    /// `ignore = IGNORE_ALWAYS`: no rule applies.
    pub ignore_always: bool,
    /// Rules of the value (of each element, for a list: see `repeated.items`).
    pub value: ValueRules,
    /// `repeated` rules.
    pub repeated: Option<RepeatedRules>,
    /// `map` rules.
    pub map: Option<MapRules>,
}

impl FieldRules {
    /// Whether the field may be left at its zero value (omitted, or `null`
    /// in JSON) without breaking a rule.
    pub fn accepts_zero(&self, field: &FieldDescriptor) -> bool {
        if self.ignore_always {
            return true;
        }
        if self.required {
            return false;
        }
        if field.is_list() {
            return self
                .repeated
                .as_ref()
                .is_none_or(|r| r.min_items.unwrap_or(0) == 0);
        }
        if field.is_map() {
            return self.map.is_none_or(|m| m.min_pairs.unwrap_or(0) == 0);
        }
        if self.ignore_if_zero || field.supports_presence() {
            return true;
        }
        let mut out = Vec::new();
        let zero = match field.kind() {
            Kind::String => Value::String(String::new()),
            Kind::Bytes => Value::Bytes(Default::default()),
            Kind::Enum(_) => Value::EnumNumber(0),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(0),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(0),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(0),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(0),
            _ => return true,
        };
        check_value(field, &self.value, &zero, "", &mut out);
        out.is_empty()
    }
}

/// The rules of every field and oneof of a descriptor pool, compiled once.
#[derive(Debug, Default)]
pub struct Rules {
    fields: HashMap<String, FieldRules>,
    required_oneofs: HashSet<String>,
    messages: HashMap<String, Vec<MessageRule>>,
    methods: HashMap<String, MethodDescriptor>,
}

impl Rules {
    /// Every pattern of every rule (`string.pattern`, CEL `matches()`), so a
    /// test can build them all: they are otherwise built on first match.
    #[cfg(test)]
    fn patterns(&self) -> Vec<&Pattern> {
        fn of_field<'a>(field: &'a FieldRules, out: &mut Vec<&'a Pattern>) {
            if let Some(pattern) = field.value.string.as_ref().and_then(|s| s.pattern.as_ref()) {
                out.push(pattern);
            }
            if let Some(items) = field.repeated.as_ref().and_then(|r| r.items.as_deref()) {
                of_field(items, out);
            }
        }
        let mut out = Vec::new();
        for field in self.fields.values() {
            of_field(field, &mut out);
        }
        for rule in self.messages.values().flatten() {
            rule.patterns(&mut out);
        }
        out
    }

    /// Compiles the rules of every message in `pool`. Fails on the first
    /// rule this interpreter does not implement (CEL included), naming it.
    pub fn from_pool(pool: &DescriptorPool) -> Result<Rules, UnsupportedRule> {
        let mut rules = Rules::default();
        let field_ext = pool.get_extension_by_name(FIELD_RULES_EXTENSION);
        let oneof_ext = pool.get_extension_by_name(ONEOF_RULES_EXTENSION);
        let message_ext = pool.get_extension_by_name(MESSAGE_RULES_EXTENSION);
        for message in pool.all_messages() {
            if let Some(ext) = &message_ext
                && message.options().has_extension(ext)
            {
                let options = message.options();
                let value = options.get_extension(ext);
                if let Some(set) = value.as_message() {
                    let compiled = compile_message(&message, set)?;
                    if !compiled.is_empty() {
                        rules
                            .messages
                            .insert(message.full_name().to_owned(), compiled);
                    }
                }
            }
            if let Some(ext) = &oneof_ext {
                for oneof in message.oneofs() {
                    let options = oneof.options();
                    if !options.has_extension(ext) {
                        continue;
                    }
                    let value = options.get_extension(ext);
                    let Some(set) = value.as_message() else {
                        continue;
                    };
                    for (field, value) in set.fields() {
                        match field.name() {
                            "required" if value.as_bool() == Some(true) => {
                                rules.required_oneofs.insert(oneof.full_name().to_owned());
                            }
                            "required" => {}
                            other => {
                                return Err(UnsupportedRule {
                                    element: oneof.full_name().to_owned(),
                                    rule: other.to_owned(),
                                });
                            }
                        }
                    }
                }
            }
            if let Some(ext) = &field_ext {
                for field in message.fields() {
                    let options = field.options();
                    if !options.has_extension(ext) {
                        continue;
                    }
                    let value = options.get_extension(ext);
                    let Some(set) = value.as_message() else {
                        continue;
                    };
                    let compiled = compile_field(field.full_name(), set)?;
                    rules.fields.insert(field.full_name().to_owned(), compiled);
                }
            }
        }
        for service in pool.services() {
            for method in service.methods() {
                if !method.is_client_streaming() {
                    rules.methods.insert(
                        format!("/{}/{}", service.full_name(), method.name()),
                        method,
                    );
                }
            }
        }
        Ok(rules)
    }

    /// The rules of `field`, when it declares any.
    pub fn field(&self, field: &FieldDescriptor) -> Option<&FieldRules> {
        self.fields.get(field.full_name())
    }

    /// The `cel` rules of the message `full_name`.
    pub fn message_rules(&self, full_name: &str) -> &[MessageRule] {
        self.messages.get(full_name).map_or(&[], Vec::as_slice)
    }

    /// Whether the oneof `full_name` must have one member set.
    pub fn oneof_required(&self, full_name: &str) -> bool {
        self.required_oneofs.contains(full_name)
    }

    /// The RPC served at the gRPC `path` (`/pkg.Service/Method`), unless it
    /// is client-streaming or unknown.
    pub fn method(&self, path: &str) -> Option<&MethodDescriptor> {
        self.methods.get(path)
    }

    /// Every broken rule of `message`, nested messages included, with proto
    /// field paths (`user.name`, `items[2]`).
    pub fn validate(&self, message: &DynamicMessage) -> Vec<FieldViolation> {
        let mut out = Vec::new();
        self.check_message(message, "", 0, &mut out);
        out
    }

    /// [`Rules::validate`] as a `VALIDATION_ERROR`, when anything is broken:
    /// one violation per field (its first broken rule), as every hand-written
    /// check answers, so a client shows one message per field.
    pub fn check(&self, message: &DynamicMessage) -> Result<(), ServiceError> {
        let mut seen = std::collections::HashSet::new();
        let mut violations = self
            .validate(message)
            .into_iter()
            .filter(|v| seen.insert(v.field.clone()));
        let Some(first) = violations.next() else {
            return Ok(());
        };
        Err(violations.fold(
            ServiceError::invalid_field(first.field, first.description),
            |error, v| error.with_violation(v.field, v.description),
        ))
    }

    fn check_message(
        &self,
        message: &DynamicMessage,
        prefix: &str,
        depth: usize,
        out: &mut Vec<FieldViolation>,
    ) {
        let descriptor = message.descriptor();
        if depth > MAX_DEPTH || descriptor.full_name().starts_with("google.protobuf.") {
            return;
        }
        for field in descriptor.fields() {
            let path = join(prefix, field.name());
            let set = message.has_field(&field);
            let value = message.get_field(&field);
            if let Some(rules) = self.field(&field) {
                self.check_field(&field, rules, set, &value, &path, out);
            }
            if set && field.kind() == Kind::String {
                check_no_nul(&value, &path, out);
            }
            if set {
                self.descend(&value, &path, depth, out);
            }
        }
        for oneof in descriptor.oneofs().filter(|o| !o.is_synthetic()) {
            if self.oneof_required(oneof.full_name())
                && !oneof.fields().any(|f| message.has_field(&f))
            {
                out.push(violation(
                    &join(prefix, oneof.name()),
                    "exactly one field is required in oneof",
                ));
            }
        }
        for rule in self.message_rules(descriptor.full_name()) {
            if !rule.holds(message) {
                out.push(violation(&join(prefix, &rule.field), rule.message.clone()));
            }
        }
    }

    fn descend(&self, value: &Value, path: &str, depth: usize, out: &mut Vec<FieldViolation>) {
        match value {
            Value::Message(inner) => self.check_message(inner, path, depth + 1, out),
            Value::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Value::Message(inner) = item {
                        self.check_message(inner, &format!("{path}[{index}]"), depth + 1, out);
                    }
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries {
                    if let Value::Message(inner) = item {
                        let key = map_key(key);
                        self.check_message(inner, &format!("{path}[{key}]"), depth + 1, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_field(
        &self,
        field: &FieldDescriptor,
        rules: &FieldRules,
        set: bool,
        value: &Value,
        path: &str,
        out: &mut Vec<FieldViolation>,
    ) {
        if rules.ignore_always {
            return;
        }
        if rules.required && !set {
            out.push(violation(path, "value is required"));
            return;
        }
        if !set && rules.ignore_if_zero {
            return;
        }
        if let Value::List(items) = value {
            if let Some(repeated) = &rules.repeated {
                check_count(
                    items.len(),
                    repeated.min_items,
                    repeated.max_items,
                    "item",
                    path,
                    out,
                );
                if repeated.unique && !unique(items) {
                    out.push(violation(path, "repeated value must contain unique items"));
                }
                if let Some(item_rules) = &repeated.items {
                    for (index, item) in items.iter().enumerate() {
                        let item_set = !is_zero(item);
                        if item_rules.ignore_if_zero && !item_set {
                            continue;
                        }
                        let item_path = format!("{path}[{index}]");
                        if item_rules.required && !item_set {
                            out.push(violation(&item_path, "value is required"));
                            continue;
                        }
                        check_value(field, &item_rules.value, item, &item_path, out);
                    }
                }
            }
            return;
        }
        if let Value::Map(entries) = value {
            if let Some(map) = &rules.map {
                check_count(
                    entries.len(),
                    map.min_pairs,
                    map.max_pairs,
                    "pair",
                    path,
                    out,
                );
            }
            return;
        }
        // A field with presence that is not set has no value to check.
        if !set && field.supports_presence() {
            return;
        }
        check_value(field, &rules.value, value, path, out);
    }
}

/// The rules of the Treven protos (`treven_proto::FILE_DESCRIPTOR_SET`),
/// compiled on first use.
pub fn mesh_rules() -> Result<&'static Rules, UnsupportedRule> {
    static RULES: LazyLock<Result<Rules, UnsupportedRule>> = LazyLock::new(|| {
        // Rules need no comments: the set without source info decodes in
        // less time and memory.
        let pool = DescriptorPool::decode(treven_proto::FILE_DESCRIPTOR_SET_WITHOUT_SOURCE_INFO)
            .expect("the generated descriptor set decodes");
        Rules::from_pool(&pool)
    });
    RULES.as_ref().map_err(Clone::clone)
}

/// The mesh-wide rule on every string of every request: no U+0000, which
/// Postgres cannot store (the OpenAPI document states it on every string).
fn check_no_nul(value: &Value, path: &str, out: &mut Vec<FieldViolation>) {
    let holds_nul = |v: &Value| v.as_str().is_some_and(|text| text.contains('\0'));
    let found = match value {
        Value::List(items) => items.iter().any(holds_nul),
        Value::Map(entries) => entries.values().any(holds_nul),
        other => holds_nul(other),
    };
    if found {
        out.push(violation(path, NO_NUL_DESCRIPTION));
    }
}

/// What a string holding U+0000 is told.
pub const NO_NUL_DESCRIPTION: &str = "must not contain the character U+0000";

/// The JSON Schema pattern of the rule above.
pub const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// Starts compiling [`mesh_rules`] on a thread of its own, so a process
/// that serves gRPC does it while it connects to its stores rather than
/// after (a few milliseconds of CPU: decoding the descriptors and checking
/// the patterns, whose regexes are built on first match: see [`Pattern`]).
/// The server still asks [`mesh_rules`] before it
/// serves, waiting for this compilation if it has not finished, and fails
/// exactly as before on an unsupported rule.
pub fn compile_mesh_rules_in_background() {
    let spawned = std::thread::Builder::new()
        .name("mesh-rules".to_owned())
        .spawn(|| {
            let _ = mesh_rules();
        });
    if let Err(error) = spawned {
        // The server compiles them itself when it starts.
        tracing::debug!(%error, "cannot start the rule compilation thread");
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(v) => v.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(v) => format!("{v:?}"),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Bool(v) => !v,
        Value::I32(v) => *v == 0,
        Value::I64(v) => *v == 0,
        Value::U32(v) => *v == 0,
        Value::U64(v) => *v == 0,
        Value::F32(v) => *v == 0.0,
        Value::F64(v) => *v == 0.0,
        Value::String(v) => v.is_empty(),
        Value::Bytes(v) => v.is_empty(),
        Value::EnumNumber(v) => *v == 0,
        Value::Message(_) => false,
        Value::List(v) => v.is_empty(),
        Value::Map(v) => v.is_empty(),
    }
}

fn unique(items: &[Value]) -> bool {
    items
        .iter()
        .enumerate()
        .all(|(i, item)| !items[..i].contains(item))
}

fn check_count(
    count: usize,
    min: Option<u64>,
    max: Option<u64>,
    noun: &str,
    path: &str,
    out: &mut Vec<FieldViolation>,
) {
    let count = count as u64;
    if let Some(min) = min
        && count < min
    {
        out.push(violation(
            path,
            format!("value must contain at least {min} {noun}(s)"),
        ));
    }
    if let Some(max) = max
        && count > max
    {
        out.push(violation(
            path,
            format!("value must contain no more than {max} {noun}(s)"),
        ));
    }
}

fn check_value(
    field: &FieldDescriptor,
    rules: &ValueRules,
    value: &Value,
    path: &str,
    out: &mut Vec<FieldViolation>,
) {
    match value {
        Value::String(text) => {
            if let Some(rules) = &rules.string {
                check_string(rules, text, path, out);
            }
        }
        Value::Bytes(bytes) => {
            if let Some(rules) = &rules.bytes {
                check_count_bytes(rules, bytes.len() as u64, path, out);
            }
        }
        Value::I32(_) | Value::I64(_) | Value::U32(_) | Value::U64(_) => {
            if let Some(rules) = &rules.integer {
                let number = match value {
                    Value::I32(v) => i128::from(*v),
                    Value::I64(v) => i128::from(*v),
                    Value::U32(v) => i128::from(*v),
                    Value::U64(v) => i128::from(*v),
                    _ => return,
                };
                check_integer(rules, number, path, out);
            }
        }
        Value::Message(mask) if mask.descriptor().full_name() == "google.protobuf.FieldMask" => {
            if let Some(rules) = &rules.field_mask {
                let paths = mask.get_field_by_number(1);
                let paths = paths
                    .as_deref()
                    .and_then(Value::as_list)
                    .unwrap_or_default();
                for named in paths {
                    let named = named.as_str().unwrap_or_default();
                    if !rules.allowed.iter().any(|allowed| allowed == named) {
                        out.push(violation(
                            path,
                            format!(
                                "{named:?} is not a path this mask may name; allowed: {}",
                                rules.allowed.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Value::EnumNumber(number) => {
            if let Some(rules) = &rules.enumeration {
                let defined = match field.kind() {
                    Kind::Enum(descriptor) => descriptor.get_value(*number).is_some(),
                    _ => true,
                };
                if rules.defined_only && !defined {
                    out.push(violation(
                        path,
                        "value must be one of the defined enum values",
                    ));
                } else if !rules.allowed.is_empty() && !rules.allowed.contains(number) {
                    out.push(violation(
                        path,
                        enum_list(field, "must be one of", &rules.allowed),
                    ));
                } else if rules.refused.contains(number) {
                    out.push(violation(
                        path,
                        enum_list(field, "must not be", &rules.refused),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn enum_list(field: &FieldDescriptor, verb: &str, numbers: &[i32]) -> String {
    let names: Vec<String> = numbers
        .iter()
        .map(|n| match field.kind() {
            Kind::Enum(descriptor) => descriptor
                .get_value(*n)
                .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
            _ => n.to_string(),
        })
        .collect();
    format!("value {verb} {}", names.join(", "))
}

fn check_count_bytes(rules: &BytesRules, len: u64, path: &str, out: &mut Vec<FieldViolation>) {
    if let Some(min) = rules.min_len
        && len < min
    {
        out.push(violation(
            path,
            format!("value must be at least {min} bytes"),
        ));
    }
    if let Some(max) = rules.max_len
        && len > max
    {
        out.push(violation(
            path,
            format!("value must be at most {max} bytes"),
        ));
    }
}

fn check_integer(rules: &IntegerRules, number: i128, path: &str, out: &mut Vec<FieldViolation>) {
    let low = rules.minimum();
    let high = rules.maximum();
    let below = low.is_some_and(|low| number < low);
    let above = high.is_some_and(|high| number > high);
    if !(below || above) {
        return;
    }
    let description = match (low, high) {
        (Some(low), Some(high)) => format!("value must be between {low} and {high}"),
        (Some(low), None) => format!("value must be at least {low}"),
        (None, Some(high)) => format!("value must be at most {high}"),
        (None, None) => return,
    };
    out.push(violation(path, description));
}

fn check_string(rules: &StringRules, text: &str, path: &str, out: &mut Vec<FieldViolation>) {
    let chars = text.chars().count() as u64;
    match (rules.min_len, rules.max_len) {
        (Some(min), Some(max)) if min == max && chars != min => {
            out.push(violation(
                path,
                format!("value length must be {min} characters"),
            ));
        }
        (min, max) => {
            if let Some(min) = min
                && chars < min
            {
                out.push(violation(
                    path,
                    format!("value length must be at least {min} characters"),
                ));
            }
            if let Some(max) = max
                && chars > max
            {
                out.push(violation(
                    path,
                    format!("value length must be at most {max} characters"),
                ));
            }
        }
    }
    if let Some(max) = rules.max_bytes
        && text.len() as u64 > max
    {
        out.push(violation(
            path,
            format!("value length must be at most {max} bytes"),
        ));
    }
    if let Some(pattern) = &rules.pattern
        && !pattern.is_match(text)
    {
        out.push(violation(
            path,
            format!("value does not match regex pattern `{}`", pattern.as_str()),
        ));
    }
    if !rules.allowed.is_empty() && !rules.allowed.iter().any(|a| a == text) {
        out.push(violation(
            path,
            format!("value must be one of {}", rules.allowed.join(", ")),
        ));
    }
    match rules.format {
        Some(StringFormat::Email) if !is_email(text) => {
            out.push(violation(path, "value must be a valid email address"));
        }
        Some(StringFormat::Uuid) if !is_uuid(text) => {
            out.push(violation(path, "value must be a valid UUID"));
        }
        _ => {}
    }
}

/// Whether `text` is an e-mail address as the `email` rule means it.
pub fn is_email(text: &str) -> bool {
    email_address::EmailAddress::is_valid(text)
        && !text.contains(['<', '>', ' '])
        && text.is_ascii()
}

/// Whether `text` is a UUID as the `uuid` rule means it: hyphenated,
/// 36 characters.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The pattern of [`is_uuid`], for schemas.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

fn unsupported(element: &str, rule: impl Into<String>) -> UnsupportedRule {
    UnsupportedRule {
        element: element.to_owned(),
        rule: rule.into(),
    }
}

fn compile_field(element: &str, set: &DynamicMessage) -> Result<FieldRules, UnsupportedRule> {
    let mut rules = FieldRules::default();
    for (field, value) in set.fields() {
        match field.name() {
            "required" => rules.required = value.as_bool() == Some(true),
            "ignore" => match value.as_enum_number() {
                Some(0) => {}
                Some(1) => rules.ignore_if_zero = true,
                Some(3) => rules.ignore_always = true,
                other => return Err(unsupported(element, format!("ignore = {other:?}"))),
            },
            "string" => {
                rules.value.string = Some(compile_string(element, message_of(element, value)?)?)
            }
            "int32" | "int64" | "uint32" | "uint64" => {
                rules.value.integer = Some(compile_integer(
                    element,
                    field.name(),
                    message_of(element, value)?,
                )?);
            }
            "enum" => {
                rules.value.enumeration = Some(compile_enum(element, message_of(element, value)?)?)
            }
            "bytes" => {
                rules.value.bytes = Some(compile_bytes(element, message_of(element, value)?)?)
            }
            "field_mask" => {
                let mut mask = FieldMaskRules::default();
                for (rule, value) in message_of(element, value)?.fields() {
                    match rule.name() {
                        "in" => {
                            mask.allowed = value
                                .as_list()
                                .unwrap_or_default()
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect();
                        }
                        other => return Err(unsupported(element, format!("field_mask.{other}"))),
                    }
                }
                rules.value.field_mask = Some(mask);
            }
            "repeated" => {
                let mut repeated = RepeatedRules::default();
                for (rule, value) in message_of(element, value)?.fields() {
                    match rule.name() {
                        "min_items" => repeated.min_items = value.as_u64(),
                        "max_items" => repeated.max_items = value.as_u64(),
                        "unique" => repeated.unique = value.as_bool() == Some(true),
                        "items" => {
                            let items = compile_field(element, message_of(element, value)?)?;
                            if items.repeated.is_some() || items.map.is_some() {
                                return Err(unsupported(element, "repeated.items.repeated"));
                            }
                            repeated.items = Some(Box::new(items));
                        }
                        other => return Err(unsupported(element, format!("repeated.{other}"))),
                    }
                }
                rules.repeated = Some(repeated);
            }
            "map" => {
                let mut map = MapRules::default();
                for (rule, value) in message_of(element, value)?.fields() {
                    match rule.name() {
                        "min_pairs" => map.min_pairs = value.as_u64(),
                        "max_pairs" => map.max_pairs = value.as_u64(),
                        other => return Err(unsupported(element, format!("map.{other}"))),
                    }
                }
                rules.map = Some(map);
            }
            other => return Err(unsupported(element, other)),
        }
    }
    Ok(rules)
}

fn compile_message(
    message: &prost_reflect::MessageDescriptor,
    set: &DynamicMessage,
) -> Result<Vec<MessageRule>, UnsupportedRule> {
    let element = message.full_name();
    let mut compiled = Vec::new();
    for (field, value) in set.fields() {
        if field.name() != "cel" {
            return Err(unsupported(element, field.name()));
        }
        for rule in value.as_list().unwrap_or_default() {
            let rule = message_of(element, rule)?;
            let text = |name: &str| {
                rule.get_field_by_name(name)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let expression = text("expression");
            let id = text("id");
            let id = if id.is_empty() {
                expression.clone()
            } else {
                id
            };
            let rule = MessageRule::compile(message, &id, &text("message"), &expression)
                .map_err(|reason| unsupported(element, format!("cel `{expression}`: {reason}")))?;
            compiled.push(rule);
        }
    }
    Ok(compiled)
}

fn message_of<'a>(element: &str, value: &'a Value) -> Result<&'a DynamicMessage, UnsupportedRule> {
    value
        .as_message()
        .ok_or_else(|| unsupported(element, "a rule set that is not a message"))
}

fn compile_string(element: &str, set: &DynamicMessage) -> Result<StringRules, UnsupportedRule> {
    let mut rules = StringRules::default();
    for (field, value) in set.fields() {
        match field.name() {
            "min_len" => rules.min_len = value.as_u64(),
            "max_len" => rules.max_len = value.as_u64(),
            "len" => {
                rules.min_len = value.as_u64();
                rules.max_len = value.as_u64();
            }
            "max_bytes" => rules.max_bytes = value.as_u64(),
            "pattern" => {
                let pattern = Pattern::new(value.as_str().unwrap_or_default().to_owned())
                    .map_err(|e| unsupported(element, format!("string.pattern ({e})")))?;
                rules.pattern = Some(pattern);
            }
            "in" => {
                rules.allowed = value
                    .as_list()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
            }
            "email" if value.as_bool() == Some(true) => rules.format = Some(StringFormat::Email),
            "uuid" if value.as_bool() == Some(true) => rules.format = Some(StringFormat::Uuid),
            other => return Err(unsupported(element, format!("string.{other}"))),
        }
    }
    Ok(rules)
}

fn compile_integer(
    element: &str,
    kind: &str,
    set: &DynamicMessage,
) -> Result<IntegerRules, UnsupportedRule> {
    let mut rules = IntegerRules::default();
    for (field, value) in set.fields() {
        let number = match value {
            Value::I32(v) => i128::from(*v),
            Value::I64(v) => i128::from(*v),
            Value::U32(v) => i128::from(*v),
            Value::U64(v) => i128::from(*v),
            _ => return Err(unsupported(element, format!("{kind}.{}", field.name()))),
        };
        match field.name() {
            "gt" => rules.gt = Some(number),
            "gte" => rules.gte = Some(number),
            "lt" => rules.lt = Some(number),
            "lte" => rules.lte = Some(number),
            other => return Err(unsupported(element, format!("{kind}.{other}"))),
        }
    }
    Ok(rules)
}

fn compile_enum(element: &str, set: &DynamicMessage) -> Result<EnumRules, UnsupportedRule> {
    let mut rules = EnumRules::default();
    let numbers = |value: &Value| -> Vec<i32> {
        value
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_i32)
            .collect()
    };
    for (field, value) in set.fields() {
        match field.name() {
            "defined_only" => rules.defined_only = value.as_bool() == Some(true),
            "in" => rules.allowed = numbers(value),
            "not_in" => rules.refused = numbers(value),
            other => return Err(unsupported(element, format!("enum.{other}"))),
        }
    }
    Ok(rules)
}

fn compile_bytes(element: &str, set: &DynamicMessage) -> Result<BytesRules, UnsupportedRule> {
    let mut rules = BytesRules::default();
    for (field, value) in set.fields() {
        match field.name() {
            "min_len" => rules.min_len = value.as_u64(),
            "max_len" => rules.max_len = value.as_u64(),
            other => return Err(unsupported(element, format!("bytes.{other}"))),
        }
    }
    Ok(rules)
}

/// The request message a gRPC request body holds, when it is one
/// uncompressed frame of a known message.
fn decode_frame(method: &MethodDescriptor, body: &[u8]) -> Option<DynamicMessage> {
    let (&flag, rest) = body.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None;
    }
    let (len, message) = rest.split_at(4);
    let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
    if message.len() != len {
        return None;
    }
    DynamicMessage::decode(method.input(), message).ok()
}

/// What a request breaks of its proto's rules: the INVALID_ARGUMENT answer,
/// with its `BadRequest` violations. [`ValidateLayer`] attaches it to the
/// request; the service's access table ([`crate::policy::Guarded`]) answers
/// with it only after the caller is admitted, so a caller that may not call
/// the method learns nothing of its rules, and every caller gets
/// UNAUTHENTICATED / PERMISSION_DENIED before INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct RuleViolation(pub tonic::Status);

/// A tower layer validating every request of the mesh routes it wraps
/// against [`mesh_rules`] (the verdict is enforced by the access table:
/// see [`RuleViolation`]).
#[derive(Debug, Clone, Copy)]
pub struct ValidateLayer {
    rules: &'static Rules,
}

impl ValidateLayer {
    /// The layer over the Treven protos' rules; fails when a proto declares
    /// a rule the interpreter does not implement.
    pub fn new() -> Result<Self, UnsupportedRule> {
        Ok(Self {
            rules: mesh_rules()?,
        })
    }
}

impl<S> tower::Layer<S> for ValidateLayer {
    type Service = Validate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Validate {
            inner,
            rules: self.rules,
        }
    }
}

/// The service of [`ValidateLayer`].
#[derive(Debug, Clone)]
pub struct Validate<S> {
    inner: S,
    rules: &'static Rules,
}

impl<S, RB> tower::Service<http::Request<axum::body::Body>> for Validate<S>
where
    S: tower::Service<http::Request<axum::body::Body>, Response = http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let Some(method) = self.rules.method(request.uri().path()).cloned() else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rules = self.rules;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_BUFFERED_BYTES).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    let status = tonic::Status::resource_exhausted(
                        "request body unreadable or larger than 16 MiB",
                    );
                    return Ok(status.into_http());
                }
            };
            let violation = match decode_frame(&method, &bytes) {
                Some(message) => rules.check(&message).err(),
                None => None,
            };
            let mut request = http::Request::from_parts(parts, axum::body::Body::from(bytes));
            if let Some(error) = violation {
                tracing::info!(rpc = method.full_name(), %error, "request breaks its proto rules");
                request
                    .extensions_mut()
                    .insert(RuleViolation(tonic::Status::from(error)));
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_rule_the_treven_protos_declare_is_implemented() {
        let rules = mesh_rules().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !rules.fields.is_empty(),
            "the protos declare rules and they are read"
        );
    }

    /// Patterns are built on first match, so this is where one that cannot
    /// be built would show before a request meets it.
    #[test]
    fn every_pattern_the_treven_protos_declare_builds() {
        let rules = mesh_rules().unwrap_or_else(|e| panic!("{e}"));
        let patterns = rules.patterns();
        assert!(
            patterns.len() >= 30,
            "string.pattern and matches() rules are found: {}",
            patterns.len()
        );
        for pattern in patterns {
            pattern
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", pattern.as_str()));
        }
    }

    #[test]
    fn a_pattern_is_checked_when_the_rules_compile_and_built_on_first_match() {
        assert!(Pattern::new("([a-z]".to_owned()).is_err());
        // Beyond the syntax: refused when built, so the value is refused.
        let unknown_class = Pattern::new("\\p{NoSuchClass}".to_owned()).unwrap();
        assert!(unknown_class.build().is_err());
        assert!(!unknown_class.is_match("a"));
        let pattern = Pattern::new("^[a-z]+$".to_owned()).unwrap();
        assert!(pattern.regex.get().is_none(), "not built yet");
        assert!(pattern.is_match("abc"));
        assert!(!pattern.is_match("ab1"));
        assert!(pattern.regex.get().is_some(), "built once, then reused");
        // Over the regex crate's size limit: the syntax passes, building
        // fails, and the value is refused rather than let through.
        let huge = Pattern::new("(?:\\w{1000}){1000}".to_owned()).unwrap();
        assert!(huge.build().is_err());
        assert!(!huge.is_match(&"a".repeat(3000)));
    }

    fn pool_of(proto: &str) -> Result<Rules, UnsupportedRule> {
        let dir = std::env::temp_dir().join(format!("treven-validate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("t.proto"), proto).expect("proto written");
        let protos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        let mut compiler = protox::Compiler::new([dir.clone(), protos]).expect("include paths");
        compiler.include_imports(true);
        compiler.open_file("t.proto").expect("test proto compiles");
        let pool = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
            .expect("decodes");
        let _ = std::fs::remove_dir_all(&dir);
        Rules::from_pool(&pool)
    }

    const HEADER: &str =
        "syntax = \"proto3\";\npackage t.v1;\nimport \"buf/validate/validate.proto\";\n";

    #[test]
    fn a_rule_the_interpreter_does_not_implement_is_refused_by_name() {
        for (body, rule) in [
            (
                "message M { string h = 1 [(buf.validate.field).string.hostname = true]; }",
                "string.hostname",
            ),
            (
                "message M { string h = 1 [(buf.validate.field).cel = {id: \"x\", expression: \"true\"}]; }",
                "cel",
            ),
            (
                "message M { option (buf.validate.message).cel = {id: \"x\", expression: \"size(this.h) > size(this.h)\"}; string h = 1; }",
                "cel `size(this.h) > size(this.h)`: `size` is not an enum value",
            ),
            (
                "message M { option (buf.validate.message).cel = {id: \"x\", expression: \"this.n > 1\"}; int64 n = 1; }",
                "cel `this.n > 1`: `n` (int64) cannot be compared with Int(1) that way",
            ),
            (
                "message M { double d = 1 [(buf.validate.field).double.gte = 1]; }",
                "double",
            ),
            (
                "message M { int32 n = 1 [(buf.validate.field).int32.const = 1]; }",
                "int32.const",
            ),
        ] {
            let error = pool_of(&format!("{HEADER}{body}")).expect_err(rule);
            assert_eq!(error.rule, rule, "{body}");
            assert!(error.element.starts_with("t.v1.M"), "{error}");
        }
        let rules = pool_of(&format!(
            "{HEADER}message M {{ oneof o {{ option (buf.validate.oneof).required = true; string a = 1; string b = 2; }} }}"
        ))
        .expect("oneof.required is implemented");
        assert!(rules.oneof_required("t.v1.M.o"));
    }

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(treven_proto::FILE_DESCRIPTOR_SET).expect("decodes")
    }

    fn message(name: &str, json: serde_json::Value) -> DynamicMessage {
        let descriptor = pool().get_message_by_name(name).expect("message exists");
        DynamicMessage::deserialize(descriptor, json).expect("valid proto3 JSON")
    }

    fn violations(name: &str, json: serde_json::Value) -> Vec<(String, String)> {
        mesh_rules()
            .expect("rules")
            .validate(&message(name, json))
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    #[test]
    fn the_treven_rules_refuse_bad_values_and_name_each_field() {
        let list = "treven.tenants.v1.ListUsersRequest";
        assert_eq!(
            violations(list, serde_json::json!({})),
            vec![],
            "defaults are valid"
        );
        assert_eq!(
            violations(
                list,
                serde_json::json!({"limit": 100, "cursor": "abc", "role": "ROLE_ADMIN"})
            ),
            vec![]
        );
        assert_eq!(
            violations(list, serde_json::json!({"limit": -2147483648, "role": 42})),
            vec![
                (
                    "limit".to_owned(),
                    "value must be between 0 and 100".to_owned()
                ),
                (
                    "role".to_owned(),
                    "value must be one of the defined enum values".to_owned()
                ),
            ]
        );
        let create = "treven.tenants.v1.CreateUserRequest";
        let found = violations(
            create,
            serde_json::json!({"email": "not-an-address", "name": " \t"}),
        );
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["email", "name", "role"], "{found:?}");
        assert_eq!(found[2].1, "value is required");
        assert_eq!(
            violations(
                create,
                serde_json::json!({"email": "a@b.org", "name": "Ann", "role": "ROLE_VIEWER"})
            ),
            vec![]
        );
        // An optional UUID filter: empty is fine, anything else must be a UUID.
        let access = "treven.tenants.v1.ListReportAccessRequest";
        assert_eq!(
            violations(access, serde_json::json!({"reportId": ""})),
            vec![]
        );
        assert_eq!(
            violations(access, serde_json::json!({"reportId": "nope"})),
            vec![(
                "report_id".to_owned(),
                "value must be a valid UUID".to_owned()
            )]
        );
        // Repeated items and nested messages carry their paths.
        let report = "treven.reports.v1.CreateReportRequest";
        let found = violations(report, serde_json::json!({"documentIds": ["x"]}));
        assert!(
            found.contains(&(
                "document_ids[0]".to_owned(),
                "value must be a valid UUID".to_owned()
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&("scope".to_owned(), "value is required".to_owned())),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn the_layer_marks_a_request_breaking_its_rules_with_bad_request_details() {
        use prost::Message as _;
        use tower::{Layer as _, ServiceExt as _};

        let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reached.clone();
        // Stands in for the access table, which answers with the violation
        // once the caller is admitted; `reached` counts calls the handler
        // would run.
        let handler = tower::service_fn(move |request: http::Request<axum::body::Body>| {
            let counter = counter.clone();
            async move {
                if let Some(RuleViolation(status)) = request.extensions().get().cloned() {
                    let mut answer = http::Response::new(axum::body::Body::empty());
                    status
                        .add_header(answer.headers_mut())
                        .expect("status headers");
                    return Ok(answer);
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = axum::body::to_bytes(request.into_body(), 1024)
                    .await
                    .expect("body");
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from(body)))
            }
        });
        let service = ValidateLayer::new().expect("rules").layer(handler);
        let frame = |request: &treven_proto::treven::tenants::v1::ListUsersRequest| {
            let payload = request.encode_to_vec();
            let mut body = vec![0u8];
            body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            body.extend_from_slice(&payload);
            body
        };
        let call = |body: Vec<u8>| {
            http::Request::post("/treven.tenants.v1.TenantsService/ListUsers")
                .header("content-type", "application/grpc")
                .body(axum::body::Body::from(body))
                .expect("request")
        };

        let bad = treven_proto::treven::tenants::v1::ListUsersRequest {
            limit: 500,
            ..Default::default()
        };
        let response = service
            .clone()
            .oneshot(call(frame(&bad)))
            .await
            .expect("answers");
        let status = tonic::Status::from_header_map(response.headers()).expect("a grpc status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        use tonic_types::StatusExt as _;
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "limit");
        assert_eq!(violations[0].description, "value must be between 0 and 100");
        assert_eq!(
            reached.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the handler never ran"
        );

        // A valid request reaches the handler with its body intact.
        let good = treven_proto::treven::tenants::v1::ListUsersRequest {
            limit: 10,
            ..Default::default()
        };
        let response = service
            .clone()
            .oneshot(call(frame(&good)))
            .await
            .expect("answers");
        let echoed = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(echoed.as_ref(), frame(&good).as_slice());
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Paths that are not Treven RPCs pass untouched.
        let response = service
            .oneshot(
                http::Request::post("/grpc.health.v1.Health/Check")
                    .body(axum::body::Body::from(vec![1, 2, 3]))
                    .expect("request"),
            )
            .await
            .expect("answers");
        let echoed = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(echoed.as_ref(), &[1, 2, 3]);
    }

    #[test]
    fn uuids_are_hyphenated_hex_only() {
        assert!(is_uuid("0190b6d4-8c1e-7a00-9f00-0123456789ab"));
        assert!(is_uuid("0190B6D4-8C1E-7A00-9F00-0123456789AB"));
        for bad in [
            "",
            "0190b6d48c1e7a009f000123456789ab",
            "{0190b6d4-8c1e-7a00-9f00-0123456789ab}",
            "0190b6d4-8c1e-7a00-9f00-0123456789ag",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
        let regex = regex::Regex::new(UUID_PATTERN).expect("pattern");
        assert!(regex.is_match("0190b6d4-8c1e-7a00-9f00-0123456789ab"));
    }

    #[test]
    fn emails_are_plain_addresses() {
        assert!(is_email("analyst@example.org"));
        for bad in ["", "analyst", "A <a@b.org>", " a@b.org", "a@b.org "] {
            assert!(!is_email(bad), "{bad:?}");
        }
    }

    /// A JSON Schema evaluator for the keywords the CEL rules compile to,
    /// so the tests can check the schema and the server agree.
    fn schema_accepts(schema: &serde_json::Value, value: &serde_json::Value) -> bool {
        let Some(object) = schema.as_object() else {
            return true;
        };
        object.iter().all(|(key, rule)| match key.as_str() {
            "anyOf" => rule
                .as_array()
                .unwrap()
                .iter()
                .any(|s| schema_accepts(s, value)),
            "allOf" => rule
                .as_array()
                .unwrap()
                .iter()
                .all(|s| schema_accepts(s, value)),
            "not" => !schema_accepts(rule, value),
            "type" => match rule.as_str().unwrap() {
                "null" => value.is_null(),
                "object" => value.is_object(),
                "string" => value.is_string(),
                other => panic!("type {other}"),
            },
            "required" => rule
                .as_array()
                .unwrap()
                .iter()
                .all(|name| !value.is_object() || value.get(name.as_str().unwrap()).is_some()),
            "properties" => rule.as_object().unwrap().iter().all(|(name, inner)| {
                value
                    .get(name)
                    .is_none_or(|member| !value.is_object() || schema_accepts(inner, member))
            }),
            "const" => value == rule,
            "enum" => rule.as_array().unwrap().contains(value),
            "minLength" | "maxLength" => value.as_str().is_none_or(|text| {
                let n = text.chars().count() as u64;
                let bound = rule.as_u64().unwrap();
                if key == "minLength" {
                    n >= bound
                } else {
                    n <= bound
                }
            }),
            "minItems" | "maxItems" => value.as_array().is_none_or(|items| {
                let n = items.len() as u64;
                let bound = rule.as_u64().unwrap();
                if key == "minItems" {
                    n >= bound
                } else {
                    n <= bound
                }
            }),
            "minimum" => value.as_f64().is_none_or(|n| n >= rule.as_f64().unwrap()),
            "maximum" => value.as_f64().is_none_or(|n| n <= rule.as_f64().unwrap()),
            "pattern" => value.as_str().is_none_or(|text| {
                regex::Regex::new(rule.as_str().unwrap())
                    .unwrap()
                    .is_match(text)
            }),
            other => panic!("keyword {other} in {schema}"),
        })
    }

    const CEL_PROTO: &str = r#"
        enum Action { ACTION_UNSPECIFIED = 0; ACTION_REDACT = 1; ACTION_KEEP = 2; }
        message Inner { string text = 1; int32 n = 2; }
        message M {
          option (buf.validate.message).cel = {
            id: "keep"
            message: "a kept finding needs a justification"
            expression: "this.action != t.v1.Action.ACTION_KEEP || size(this.why) >= 3"
          };
          option (buf.validate.message).cel = {
            id: "place"
            message: "a country or a region is required"
            expression: "this.region.matches('\\S') || this.country != ''"
          };
          option (buf.validate.message).cel = {
            id: "inner"
            expression: "!has(this.inner) || (this.inner.n > 1 && this.inner.text == 'x') || size(this.tags) == 0"
          };
          Action action = 1;
          string why = 2;
          string country = 3;
          string region = 4;
          Inner inner = 5;
          repeated string tags = 6;
        }
    "#;

    #[test]
    fn cel_message_rules_hold_where_their_json_schema_accepts() {
        let rules = pool_of(&format!("{HEADER}{CEL_PROTO}")).unwrap_or_else(|e| panic!("{e}"));
        let compiled = rules.message_rules("t.v1.M");
        assert_eq!(compiled.len(), 3);
        assert_eq!(
            compiled
                .iter()
                .map(|r| r.field.as_str())
                .collect::<Vec<_>>(),
            ["why", "country", "tags"],
            "each names the first field of its last alternative"
        );
        let dir = std::env::temp_dir().join(format!("treven-cel-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.proto"), format!("{HEADER}{CEL_PROTO}")).unwrap();
        let protos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        let mut compiler = protox::Compiler::new([dir.clone(), protos]).unwrap();
        compiler.include_imports(true);
        compiler.open_file("t.proto").unwrap();
        let pool =
            DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let descriptor = pool.get_message_by_name("t.v1.M").unwrap();
        let cases = [
            serde_json::json!({}),
            serde_json::json!({"country": "GB"}),
            serde_json::json!({"region": "   "}),
            serde_json::json!({"region": " Balkans"}),
            serde_json::json!({"region": null, "country": null}),
            serde_json::json!({"country": "", "region": "x"}),
            serde_json::json!({"country": "GB", "action": "ACTION_KEEP"}),
            serde_json::json!({"country": "GB", "action": "ACTION_KEEP", "why": "ok"}),
            serde_json::json!({"country": "GB", "action": "ACTION_KEEP", "why": "oké"}),
            serde_json::json!({"country": "GB", "action": "ACTION_REDACT"}),
            serde_json::json!({"country": "GB", "action": "ACTION_KEEP", "why": null}),
            serde_json::json!({"country": "GB", "inner": {}}),
            serde_json::json!({"country": "GB", "inner": null, "tags": ["a"]}),
            serde_json::json!({"country": "GB", "inner": {}, "tags": ["a"]}),
            serde_json::json!({"country": "GB", "inner": {"n": 2, "text": "x"}, "tags": ["a"]}),
            serde_json::json!({"country": "GB", "inner": {"n": 1, "text": "x"}, "tags": ["a"]}),
            serde_json::json!({"country": "GB", "inner": {"n": 2}, "tags": ["a"]}),
            serde_json::json!({"country": "GB", "inner": {"n": 2, "text": "x"}, "tags": []}),
        ];
        let mut broken = 0;
        for case in cases {
            let message = DynamicMessage::deserialize(descriptor.clone(), case.clone()).unwrap();
            for rule in compiled {
                let holds = rule.holds(&message);
                assert_eq!(
                    holds,
                    schema_accepts(rule.schema(), &case),
                    "rule {} on {case}: schema {}",
                    rule.id,
                    rule.schema()
                );
                broken += usize::from(!holds);
            }
        }
        assert!(
            broken >= 8,
            "the cases break the rules often enough: {broken}"
        );
        // The server's answer: one violation per broken rule, on its field.
        let message = DynamicMessage::deserialize(
            descriptor,
            serde_json::json!({"action": "ACTION_KEEP", "inner": {}, "tags": ["a"]}),
        )
        .unwrap();
        let found: Vec<(String, String)> = rules
            .validate(&message)
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect();
        assert_eq!(
            found,
            [
                ("why".to_owned(), "a kept finding needs a justification".to_owned()),
                ("country".to_owned(), "a country or a region is required".to_owned()),
                (
                    "tags".to_owned(),
                    "must satisfy `!has(this.inner) || (this.inner.n > 1 && this.inner.text == 'x') || size(this.tags) == 0`".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_treven_cel_rules_refuse_what_their_messages_describe() {
        let keep = |why: &str| {
            violations(
                "treven.reports.v1.PiiDecision",
                serde_json::json!({"findingId": "f1", "action": "PII_ACTION_KEEP", "justification": why}),
            )
        };
        let refused = vec![(
            "justification".to_owned(),
            "keeping personal data needs a justification of 10–2,000 characters".to_owned(),
        )];
        assert_eq!(keep(""), refused);
        assert_eq!(keep("   too short   "), refused);
        assert_eq!(keep("          "), refused);
        assert_eq!(keep("  a public helpline  "), vec![]);
        assert_eq!(
            violations(
                "treven.reports.v1.PiiDecision",
                serde_json::json!({"findingId": "f1", "action": "PII_ACTION_REDACT"}),
            ),
            vec![]
        );
        let scope = |json: serde_json::Value| {
            violations("treven.reports.v1.ReportScope", json)
                .into_iter()
                .map(|(field, _)| field)
                .collect::<Vec<_>>()
        };
        let valid = serde_json::json!({"country": "GB", "sector": "agriculture", "exploitationType": "EXPLOITATION_TYPE_LABOUR", "clientType": "ORGANISATION_KIND_NGO"});
        assert!(scope(valid.clone()).is_empty());
        let mut no_place = valid.clone();
        no_place["country"] = "".into();
        no_place["region"] = "  ".into();
        assert_eq!(scope(no_place.clone()), ["country"]);
        no_place["region"] = "Western Balkans".into();
        assert!(scope(no_place).is_empty());
        assert_eq!(
            scope(serde_json::json!({"country": "GBR", "clientType": "ORGANISATION_KIND_OWNER"})),
            ["country", "sector", "exploitation_type", "client_type"],
            "OWNER is refused (an unset client type is refused by CreateReport's code)"
        );
    }

    #[test]
    fn an_agent_run_needs_what_its_kind_reads_and_the_schema_says_the_same() {
        let name = "treven.agents.v1.RunAgentRequest";
        let rules = mesh_rules().expect("rules");
        let compiled = rules.message_rules(name);
        assert_eq!(
            compiled.len(),
            9,
            "one rule per kind, five for the generator"
        );
        let kind = |k: &str| format!("AGENT_KIND_{k}");
        let cases = [
            serde_json::json!({"kind": kind("OSINT")}),
            serde_json::json!({"kind": kind("OSINT"), "input": {"scenario": "  "}}),
            serde_json::json!({"kind": kind("OSINT"), "input": {"scenario": 5}}),
            serde_json::json!({"kind": kind("OSINT"), "input": {"scenario": "forced labour\nin farms"}}),
            serde_json::json!({"kind": kind("OSINT"), "input": {"scenario": "bell\u{7}"}}),
            serde_json::json!({"kind": kind("OSINT"), "input": {"scenario": "x".repeat(8001)}}),
            serde_json::json!({"kind": kind("SUMMARISE"), "input": {"before": "a", "after": ""}}),
            serde_json::json!({"kind": kind("SUMMARISE"), "input": {"before": "a"}}),
            serde_json::json!({"kind": kind("SUMMARISE"), "input": {"text": "a"}}),
            serde_json::json!({"kind": kind("SUMMARISE"), "input": {"text": null}}),
            serde_json::json!({"kind": kind("SOCIAL"), "input": {"report_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}}),
            serde_json::json!({"kind": kind("SOCIAL"), "input": {"report_id": "nope"}}),
            serde_json::json!({"kind": kind("PII"), "input": {"text": "Call 07700 900123"}}),
            serde_json::json!({"kind": kind("PII"), "input": {}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"country": "gb"}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"country": "GBR"}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"region": " Balkans ", "country": ""}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"country": "GB", "sector": "farm\tland"}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"country": "GB", "exploitation_type": "labour"}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"country": "GB", "exploitation_type": "LABOUR"}}),
            serde_json::json!({"kind": kind("GENERATOR"), "input": {"country": "GB", "region": null}}),
            serde_json::json!({"kind": kind("GENERATOR")}),
            serde_json::json!({"kind": kind("PII"), "input": {"scenario": "ignored"}, "modelId": "m"}),
        ];
        let mut broken = 0;
        for case in &cases {
            let message = message(name, case.clone());
            for rule in compiled {
                let holds = rule.holds(&message);
                assert_eq!(
                    holds,
                    schema_accepts(rule.schema(), case),
                    "rule {} on {case}: schema {}",
                    rule.id,
                    rule.schema()
                );
                broken += usize::from(!holds);
            }
        }
        assert!(broken >= 12, "the cases break the rules: {broken}");
        assert_eq!(
            violations(name, cases[0].clone()),
            [(
                "input.scenario".to_owned(),
                "an osint run needs input.scenario: text of at most 8,000 characters, without control characters but newlines and tabs".to_owned()
            )]
        );
        assert!(violations(name, cases[3].clone()).is_empty());
        assert!(violations(name, cases[6].clone()).is_empty());
        assert_eq!(
            violations(name, cases[7].clone())
                .into_iter()
                .map(|(field, _)| field)
                .collect::<Vec<_>>(),
            ["input.text"]
        );
        assert_eq!(
            violations(name, cases[15].clone())
                .into_iter()
                .map(|(field, _)| field)
                .collect::<Vec<_>>(),
            ["input.country", "input.country"],
            "no place, and not a code"
        );
        // CreateReport needs the client type that GenerateReport does not.
        let report = serde_json::json!({"scope": {"country": "GB", "sector": "agriculture", "exploitationType": "EXPLOITATION_TYPE_LABOUR"}});
        assert_eq!(
            violations("treven.reports.v1.CreateReportRequest", report.clone()),
            [(
                "scope.client_type".to_owned(),
                "the client type is required: fi, ngo or le".to_owned()
            )]
        );
        let mut with_client = report;
        with_client["scope"]["clientType"] = "ORGANISATION_KIND_FI".into();
        assert!(violations("treven.reports.v1.CreateReportRequest", with_client).is_empty());
    }

    #[test]
    fn an_update_mask_names_only_the_paths_its_rule_lists() {
        let name = "treven.tenants.v1.UpdateUserRequest";
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(
            violations(
                name,
                serde_json::json!({"id": id, "updateMask": "name,createdAt"})
            )
            .is_empty()
        );
        let found = violations(
            name,
            serde_json::json!({"id": id, "updateMask": "name,orgRole"}),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "update_mask");
        assert!(found[0].1.contains("\"org_role\""), "{found:?}");
        // The user's fields are checked when set, not when left out.
        assert!(violations(name, serde_json::json!({"id": id, "user": {}})).is_empty());
        let found = violations(
            name,
            serde_json::json!({"id": id, "user": {"email": "nope", "name": " ", "role": 42}}),
        );
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["user.email", "user.name", "user.role"],
            "{found:?}"
        );
    }

    #[test]
    fn no_string_of_any_request_may_hold_a_nul() {
        let found = violations(
            "treven.reports.v1.CreateReportRequest",
            serde_json::json!({
                "scope": {"country": "GB", "sector": "farms", "exploitationType": "EXPLOITATION_TYPE_LABOUR", "clientType": "ORGANISATION_KIND_FI"},
                "documentIds": ["a\u{0}"],
            }),
        );
        assert!(
            found.contains(&("document_ids".to_owned(), NO_NUL_DESCRIPTION.to_owned())),
            "{found:?}"
        );
        assert_eq!(
            violations(
                "treven.tenants.v1.ListUsersRequest",
                serde_json::json!({"cursor": "x\u{0}y"})
            ),
            [("cursor".to_owned(), NO_NUL_DESCRIPTION.to_owned())]
        );
        assert!(
            regex::Regex::new(NO_NUL_PATTERN)
                .expect("the documented pattern compiles")
                .is_match("plain text")
        );
        assert!(
            !regex::Regex::new(NO_NUL_PATTERN)
                .unwrap()
                .is_match("a\u{0}")
        );
    }
}
