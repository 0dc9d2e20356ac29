//! Message rules written in CEL (`(buf.validate.message).cel`): the small
//! subset of CEL that cross-field rules of a request need, checked on the
//! server and rendered as the equivalent JSON Schema, so the OpenAPI
//! document and the mesh always agree on them.
//!
//! # The subset
//!
//! ```text
//! expr    := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" expr ")" | "true" | "false"
//!          | "has(" path ")" | path ".matches(" string ")"
//!          | operand [("==" | "!=" | "<" | "<=" | ">" | ">=") literal]
//! operand := path | "size(" path ")"
//! path    := "this" ("." field)+ ["." key]  (singular messages, then the
//!                                          field; a key only after a
//!                                          `google.protobuf.Struct` field)
//! literal := integer | 'string' | "string" | true | false
//!          | full.name.of.an.Enum.VALUE
//! ```
//!
//! Values follow CEL on proto3: an unset field reads as its default (an
//! unset message as its default instance), `has()` is presence for fields
//! with presence and "not the default" for the others, `size()` counts the
//! characters of a string or the items of a list. A key of a `Struct` is
//! read as in CEL's maps: `has(this.input.text)` is the key's presence;
//! `.matches()` and `size()` of a member hold only for a string member (a
//! missing or other member is no string: the condition is false, where
//! CEL would fail the rule). A member takes only `has()`, `.matches()` and
//! `size()`. A bare path must be a
//! `bool` field. Comparing two fields, 64-bit integers (strings in JSON) or
//! anything else outside this list is refused when the rules are compiled
//! (naming the message and the expression), so a rule is never enforced on
//! one side only.
//!
//! # The violation
//!
//! A broken rule is one `BadRequest` field violation with the rule's
//! `message`, on the first field of the expression's last `||` alternative
//! (`this.action != KEEP || size(this.justification) >= 10` →
//! `justification`), below the message's own path: what the user must fix.

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde_json::{Value as Json, json};

use super::Pattern;

/// One compiled `cel` rule of a message.
#[derive(Debug, Clone)]
pub struct MessageRule {
    /// The rule's `id`.
    pub id: String,
    /// What the violation says.
    pub message: String,
    /// The expression as written.
    pub expression: String,
    /// The proto path (below the message) the violation names.
    pub field: String,
    expr: Expr,
    schema: Json,
    top_fields: Vec<String>,
}

impl MessageRule {
    /// Adds the patterns of the rule's `matches()` calls to `out`.
    #[cfg(test)]
    pub(super) fn patterns<'a>(&'a self, out: &mut Vec<&'a Pattern>) {
        fn walk<'a>(expr: &'a Expr, out: &mut Vec<&'a Pattern>) {
            match expr {
                Expr::Or(a, b) | Expr::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Not(a) => walk(a, out),
                Expr::Matches(_, pattern) | Expr::MemberMatches(_, _, pattern) => out.push(pattern),
                Expr::Const(_) | Expr::Has(_) | Expr::HasMember(..) | Expr::Compare(..) => {}
            }
        }
        walk(&self.expr, out);
    }

    /// Compiles `expression` against `message`; `Err` says why it is not in
    /// the subset.
    pub fn compile(
        message: &MessageDescriptor,
        id: &str,
        text: &str,
        expression: &str,
    ) -> Result<MessageRule, String> {
        let tokens = tokenize(expression)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            root: message,
            pool: message.parent_pool().clone(),
        };
        let expr = parser.or()?;
        if parser.at != parser.tokens.len() {
            return Err(format!("unexpected `{}`", parser.tokens[parser.at]));
        }
        let field =
            violation_field(&expr).ok_or_else(|| "the expression names no field".to_owned())?;
        let schema = schema_of(&expr)?;
        let mut top_fields = Vec::new();
        collect_top_fields(&expr, &mut top_fields);
        Ok(MessageRule {
            id: id.to_owned(),
            message: if text.is_empty() {
                format!("must satisfy `{expression}`")
            } else {
                text.to_owned()
            },
            expression: expression.to_owned(),
            field,
            expr,
            schema,
            top_fields,
        })
    }

    /// Whether `message` satisfies the rule.
    pub fn holds(&self, message: &DynamicMessage) -> bool {
        eval(&self.expr, message)
    }

    /// The JSON Schema (of the message's proto3 JSON object) that a value
    /// satisfies exactly when the rule holds.
    pub fn schema(&self) -> &Json {
        &self.schema
    }

    /// The JSON names of the message's own fields the rule reads.
    pub fn top_fields(&self) -> &[String] {
        &self.top_fields
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Int(i64),
    Str(String),
    Op(&'static str),
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Ident(s) => f.write_str(s),
            Token::Int(n) => write!(f, "{n}"),
            Token::Str(s) => write!(f, "{s:?}"),
            Token::Op(s) => f.write_str(s),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    const OPS: [&str; 14] = [
        "||", "&&", "==", "!=", "<=", ">=", "!", "<", ">", "(", ")", ".", ",", "-",
    ];
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let number: i64 = digits
                .parse()
                .map_err(|_| format!("integer `{digits}` is too large"))?;
            let negative = tokens.last() == Some(&Token::Op("-"));
            if negative {
                tokens.pop();
            }
            tokens.push(Token::Int(if negative { -number } else { number }));
        } else if c == '\'' || c == '"' {
            let quote = c;
            let mut value = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                match c {
                    '\\' => {
                        let escaped = chars
                            .get(i)
                            .copied()
                            .ok_or_else(|| "unterminated string".to_owned())?;
                        i += 1;
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    c if c == quote => break,
                    c => value.push(c),
                }
            }
            tokens.push(Token::Str(value));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPS
                .iter()
                .find(|op| rest.starts_with(**op))
                .ok_or_else(|| format!("unexpected character `{c}`"))?;
            tokens.push(Token::Op(op));
            i += op.len();
        }
    }
    if tokens.contains(&Token::Op("-")) || tokens.contains(&Token::Op(",")) {
        return Err("`-` and `,` are only allowed in a negative integer".into());
    }
    Ok(tokens)
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Int(i64),
    Str(String),
    Bool(bool),
    /// An enum value: its number and name.
    Enum(i32, String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Operand {
    Field(Vec<FieldDescriptor>),
    Size(Vec<FieldDescriptor>),
    /// `size()` of a `Struct` member (`path` ends at the `Struct`).
    MemberSize(Vec<FieldDescriptor>, String),
}

impl Operand {
    fn path(&self) -> &[FieldDescriptor] {
        match self {
            Operand::Field(path) | Operand::Size(path) | Operand::MemberSize(path, _) => path,
        }
    }
}

/// A path, and the `Struct` key after it when there is one.
type Member = (Vec<FieldDescriptor>, Option<String>);

fn is_struct(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Struct")
        && !field.is_list()
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Const(bool),
    Has(Vec<FieldDescriptor>),
    Matches(Vec<FieldDescriptor>, Pattern),
    Compare(Operand, Cmp, Literal),
    /// `has()` of a `Struct` member.
    HasMember(Vec<FieldDescriptor>, String),
    /// `.matches()` of a `Struct` member.
    MemberMatches(Vec<FieldDescriptor>, String, Pattern),
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    root: &'a MessageDescriptor,
    pool: DescriptorPool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Token::Op(o)) if *o == op) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(format!(
                "expected `{op}`, found {}",
                self.peek()
                    .map_or_else(|| "the end".to_owned(), |t| format!("`{t}`"))
            ))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            self.expect(")")?;
            return Ok(inner);
        }
        let Some(Token::Ident(word)) = self.peek().cloned() else {
            return Err(format!(
                "expected a condition, found {}",
                self.peek()
                    .map_or_else(|| "the end".to_owned(), |t| format!("`{t}`"))
            ));
        };
        let operand = match word.as_str() {
            "true" | "false" => {
                self.at += 1;
                return Ok(Expr::Const(word == "true"));
            }
            "has" => {
                self.at += 1;
                self.expect("(")?;
                let (path, key) = self.member()?;
                self.expect(")")?;
                return Ok(match key {
                    Some(key) => Expr::HasMember(path, key),
                    None => Expr::Has(path),
                });
            }
            "size" => {
                self.at += 1;
                self.expect("(")?;
                let (path, key) = self.member()?;
                self.expect(")")?;
                if let Some(key) = key {
                    Operand::MemberSize(path, key)
                } else {
                    let leaf = leaf(&path);
                    if !(leaf.is_list() || matches!(leaf.kind(), Kind::String | Kind::Bytes)) {
                        return Err(format!("size() of `{}`, not a string or list", leaf.name()));
                    }
                    Operand::Size(path)
                }
            }
            _ => {
                let (path, key) = self.member()?;
                if self.eat(".") {
                    if self.peek() != Some(&Token::Ident("matches".into())) {
                        return Err("only `.matches(…)` may follow a field".into());
                    }
                    self.at += 1;
                    self.expect("(")?;
                    let Some(Token::Str(pattern)) = self.peek().cloned() else {
                        return Err("matches() takes a string literal".into());
                    };
                    self.at += 1;
                    self.expect(")")?;
                    let pattern = Pattern::new(pattern)?;
                    if let Some(key) = key {
                        return Ok(Expr::MemberMatches(path, key, pattern));
                    }
                    if leaf(&path).kind() != Kind::String || leaf(&path).is_list() {
                        return Err("matches() of a field that is not a string".into());
                    }
                    return Ok(Expr::Matches(path, pattern));
                }
                if let Some(key) = key {
                    return Err(format!(
                        "a Struct member (`{key}`) takes only has(), matches() and size()"
                    ));
                }
                Operand::Field(path)
            }
        };
        let op = match self.peek() {
            Some(Token::Op("==")) => Cmp::Eq,
            Some(Token::Op("!=")) => Cmp::Ne,
            Some(Token::Op("<")) => Cmp::Lt,
            Some(Token::Op("<=")) => Cmp::Le,
            Some(Token::Op(">")) => Cmp::Gt,
            Some(Token::Op(">=")) => Cmp::Ge,
            _ => {
                return match &operand {
                    Operand::Field(path)
                        if leaf(path).kind() == Kind::Bool && !leaf(path).is_list() =>
                    {
                        Ok(Expr::Compare(operand, Cmp::Eq, Literal::Bool(true)))
                    }
                    _ => Err(
                        "a condition must be a comparison, has(), matches() or a bool field".into(),
                    ),
                };
            }
        };
        self.at += 1;
        let literal = self.literal()?;
        check_comparison(&operand, op, &literal)?;
        Ok(Expr::Compare(operand, op, literal))
    }

    /// A path, then a key when the path ends at a `Struct` field.
    fn member(&mut self) -> Result<Member, String> {
        let path = self.path()?;
        if !is_struct(leaf(&path)) || !matches!(self.peek(), Some(Token::Op("."))) {
            return Ok((path, None));
        }
        if matches!(self.tokens.get(self.at + 1), Some(Token::Ident(w)) if w == "matches")
            && matches!(self.tokens.get(self.at + 2), Some(Token::Op("(")))
        {
            return Err("matches() of a Struct, not of one of its members".into());
        }
        self.at += 1;
        let Some(Token::Ident(key)) = self.peek().cloned() else {
            return Err("expected a key after `.`".into());
        };
        self.at += 1;
        Ok((path, Some(key)))
    }

    fn path(&mut self) -> Result<Vec<FieldDescriptor>, String> {
        if self.peek() != Some(&Token::Ident("this".into())) {
            return Err("a field is written `this.name`".into());
        }
        self.at += 1;
        let mut message = self.root.clone();
        let mut path = Vec::new();
        loop {
            // `.matches(` ends the path.
            if !matches!(self.peek(), Some(Token::Op("."))) {
                break;
            }
            if matches!(self.tokens.get(self.at + 1), Some(Token::Ident(w)) if w == "matches")
                && matches!(self.tokens.get(self.at + 2), Some(Token::Op("(")))
            {
                break;
            }
            if path.last().is_some_and(is_struct) {
                // What follows is a key (`member`).
                break;
            }
            self.at += 1;
            let Some(Token::Ident(name)) = self.peek().cloned() else {
                return Err("expected a field name after `.`".into());
            };
            self.at += 1;
            if let Some(last) = path.last() {
                let last: &FieldDescriptor = last;
                match last.kind() {
                    Kind::Message(inner) if !last.is_list() && !last.is_map() => message = inner,
                    _ => return Err(format!("`{}` has no fields", last.name())),
                }
            }
            let field = message
                .get_field_by_name(&name)
                .ok_or_else(|| format!("{} has no field `{name}`", message.full_name()))?;
            if field.is_map() {
                return Err(format!("map field `{name}` is not supported"));
            }
            path.push(field);
        }
        if path.is_empty() {
            return Err("`this` alone is not a field".into());
        }
        Ok(path)
    }

    fn literal(&mut self) -> Result<Literal, String> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| "expected a literal".to_owned())?;
        self.at += 1;
        match token {
            Token::Int(n) => Ok(Literal::Int(n)),
            Token::Str(s) => Ok(Literal::Str(s)),
            Token::Ident(word) if word == "true" || word == "false" => {
                Ok(Literal::Bool(word == "true"))
            }
            Token::Ident(first) => {
                let mut name = first;
                while self.eat(".") {
                    match self.peek().cloned() {
                        Some(Token::Ident(part)) => {
                            self.at += 1;
                            name.push('.');
                            name.push_str(&part);
                        }
                        _ => return Err("expected a name after `.`".into()),
                    }
                }
                let (enum_name, value_name) = name
                    .rsplit_once('.')
                    .ok_or_else(|| format!("`{name}` is not an enum value"))?;
                let value = self
                    .pool
                    .get_enum_by_name(enum_name)
                    .and_then(|e| e.get_value_by_name(value_name))
                    .ok_or_else(|| format!("`{name}` is not an enum value"))?;
                Ok(Literal::Enum(value.number(), value.name().to_owned()))
            }
            Token::Op(op) => Err(format!("expected a literal, found `{op}`")),
        }
    }
}

fn leaf(path: &[FieldDescriptor]) -> &FieldDescriptor {
    &path[path.len() - 1]
}

fn check_comparison(operand: &Operand, op: Cmp, literal: &Literal) -> Result<(), String> {
    let ordered = !matches!(op, Cmp::Eq | Cmp::Ne);
    match (operand, literal) {
        (Operand::Size(_) | Operand::MemberSize(..), Literal::Int(n)) if *n >= 0 => Ok(()),
        (Operand::Field(path), literal) => {
            let field = leaf(path);
            if field.is_list() {
                return Err(format!("`{}` is a list: compare its size()", field.name()));
            }
            match (field.kind(), literal) {
                (Kind::String, Literal::Str(_)) if !ordered => Ok(()),
                (Kind::Bool, Literal::Bool(_)) if !ordered => Ok(()),
                (Kind::Int32 | Kind::Sint32 | Kind::Sfixed32, Literal::Int(n))
                    if i32::try_from(*n).is_ok() =>
                {
                    Ok(())
                }
                (Kind::Uint32 | Kind::Fixed32, Literal::Int(n)) if u32::try_from(*n).is_ok() => {
                    Ok(())
                }
                (Kind::Enum(descriptor), Literal::Enum(number, _)) if !ordered => {
                    if descriptor.get_value(*number).is_some() {
                        Ok(())
                    } else {
                        Err(format!("not a value of {}", descriptor.full_name()))
                    }
                }
                (kind, literal) => Err(format!(
                    "`{}` ({kind:?}) cannot be compared with {literal:?} that way",
                    field.name()
                )),
            }
        }
        _ => Err("size() is compared with a non-negative integer".into()),
    }
}

// ---- evaluation -------------------------------------------------------------

/// The value at `path` below `message`, reading unset messages as their
/// default instance; with whether the leaf is "set" (`has()`).
fn read(message: &DynamicMessage, path: &[FieldDescriptor]) -> (Value, bool) {
    let mut current = message.clone();
    for field in &path[..path.len() - 1] {
        current = match current.get_field(field).as_message() {
            Some(inner) if current.has_field(field) => inner.clone(),
            _ => match field.kind() {
                Kind::Message(descriptor) => DynamicMessage::new(descriptor),
                _ => return (Value::Bool(false), false),
            },
        };
    }
    let field = leaf(path);
    let set = current.has_field(field);
    (current.get_field(field).into_owned(), set)
}

/// The member `key` of the `Struct` at `path` (a `google.protobuf.Value`),
/// when the Struct is set and has the key.
fn member(message: &DynamicMessage, path: &[FieldDescriptor], key: &str) -> Option<DynamicMessage> {
    let (value, set) = read(message, path);
    let fields = value
        .as_message()
        .filter(|_| set)?
        .get_field_by_name("fields")?;
    let entry = fields
        .as_map()?
        .get(&prost_reflect::MapKey::String(key.to_owned()))?;
    entry.as_message().cloned()
}

/// The member `key` of the `Struct` at `path` when it is a string.
fn member_string(message: &DynamicMessage, path: &[FieldDescriptor], key: &str) -> Option<String> {
    let value = member(message, path, key)?;
    if !value.has_field_by_name("string_value") {
        return None;
    }
    value
        .get_field_by_name("string_value")
        .and_then(|v| v.as_str().map(str::to_owned))
}

fn eval(expr: &Expr, message: &DynamicMessage) -> bool {
    match expr {
        Expr::Or(a, b) => eval(a, message) || eval(b, message),
        Expr::And(a, b) => eval(a, message) && eval(b, message),
        Expr::Not(a) => !eval(a, message),
        Expr::Const(value) => *value,
        Expr::Has(path) => read(message, path).1,
        Expr::HasMember(path, key) => member(message, path, key).is_some(),
        Expr::MemberMatches(path, key, pattern) => {
            member_string(message, path, key).is_some_and(|text| pattern.is_match(&text))
        }
        Expr::Matches(path, pattern) => match read(message, path).0 {
            Value::String(text) => pattern.is_match(&text),
            _ => false,
        },
        Expr::Compare(operand, op, literal) => {
            let (value, _) = read(message, operand.path());
            let ordering = match (operand, &value, literal) {
                (Operand::MemberSize(path, key), _, Literal::Int(n)) => {
                    match member_string(message, path, key) {
                        Some(text) => (text.chars().count() as i64).cmp(n),
                        None => return false,
                    }
                }
                (Operand::Size(_), value, Literal::Int(n)) => {
                    let size = match value {
                        Value::String(s) => s.chars().count() as i64,
                        Value::Bytes(b) => b.len() as i64,
                        Value::List(items) => items.len() as i64,
                        _ => return false,
                    };
                    size.cmp(n)
                }
                (_, Value::String(s), Literal::Str(lit)) => s.as_str().cmp(lit.as_str()),
                (_, Value::Bool(b), Literal::Bool(lit)) => b.cmp(lit),
                (_, Value::EnumNumber(n), Literal::Enum(lit, _)) => n.cmp(lit),
                (_, Value::I32(n), Literal::Int(lit)) => i64::from(*n).cmp(lit),
                (_, Value::U32(n), Literal::Int(lit)) => i64::from(*n).cmp(lit),
                _ => return false,
            };
            use std::cmp::Ordering::{Equal, Greater, Less};
            match op {
                Cmp::Eq => ordering == Equal,
                Cmp::Ne => ordering != Equal,
                Cmp::Lt => ordering == Less,
                Cmp::Le => ordering != Greater,
                Cmp::Gt => ordering == Greater,
                Cmp::Ge => ordering != Less,
            }
        }
    }
}

// ---- the violation's field ----------------------------------------------------

fn first_path(expr: &Expr) -> Option<&[FieldDescriptor]> {
    match expr {
        Expr::Or(a, b) | Expr::And(a, b) => first_path(a).or_else(|| first_path(b)),
        Expr::Not(a) => first_path(a),
        Expr::Const(_) => None,
        Expr::Has(path)
        | Expr::Matches(path, _)
        | Expr::HasMember(path, _)
        | Expr::MemberMatches(path, _, _) => Some(path),
        Expr::Compare(operand, _, _) => Some(operand.path()),
    }
}

/// The `Struct` key of the first condition of `expr`, when it reads one.
fn first_key(expr: &Expr) -> Option<Option<&str>> {
    match expr {
        Expr::Or(a, b) | Expr::And(a, b) => first_key(a).or_else(|| first_key(b)),
        Expr::Not(a) => first_key(a),
        Expr::Const(_) => None,
        Expr::HasMember(_, key)
        | Expr::MemberMatches(_, key, _)
        | Expr::Compare(Operand::MemberSize(_, key), _, _) => Some(Some(key)),
        Expr::Has(_) | Expr::Matches(..) | Expr::Compare(..) => Some(None),
    }
}

fn violation_field(expr: &Expr) -> Option<String> {
    let mut last = expr;
    while let Expr::Or(_, b) = last {
        last = b;
    }
    let path = first_path(last)?;
    let mut names: Vec<String> = path.iter().map(|f| f.name().to_owned()).collect();
    if let Some(Some(key)) = first_key(last) {
        names.push(key.to_owned());
    }
    Some(names.join("."))
}

fn collect_top_fields(expr: &Expr, out: &mut Vec<String>) {
    let mut push = |path: &[FieldDescriptor]| {
        let name = path[0].json_name().to_owned();
        if !out.contains(&name) {
            out.push(name);
        }
    };
    match expr {
        Expr::Or(a, b) | Expr::And(a, b) => {
            collect_top_fields(a, out);
            collect_top_fields(b, out);
        }
        Expr::Not(a) => collect_top_fields(a, out),
        Expr::Const(_) => {}
        Expr::Has(path)
        | Expr::Matches(path, _)
        | Expr::HasMember(path, _)
        | Expr::MemberMatches(path, _, _) => push(path),
        Expr::Compare(operand, _, _) => push(operand.path()),
    }
}

// ---- JSON Schema --------------------------------------------------------------

/// The schema an instance satisfies exactly when `expr` holds.
fn schema_of(expr: &Expr) -> Result<Json, String> {
    Ok(match expr {
        Expr::Or(a, b) => json!({ "anyOf": [schema_of(a)?, schema_of(b)?] }),
        Expr::And(a, b) => json!({ "allOf": [schema_of(a)?, schema_of(b)?] }),
        Expr::Not(a) => json!({ "not": schema_of(a)? }),
        Expr::Const(true) => json!({}),
        Expr::Const(false) => json!({ "not": {} }),
        atom => {
            let path = first_path(atom).ok_or("no field")?;
            let leaf_schema = leaf_schema(atom)?;
            let root = DynamicMessage::new(path[0].parent_message().clone());
            if eval(atom, &root) {
                // Holds at the default: broken only by a present value that
                // fails it.
                json!({ "not": chain(path, json!({ "not": leaf_schema })) })
            } else {
                chain(path, leaf_schema)
            }
        }
    })
}

/// `inner` applied to the present, non-null value at `path`.
fn chain(path: &[FieldDescriptor], inner: Json) -> Json {
    let mut schema = inner;
    for field in path.iter().rev() {
        schema = json!({
            "required": [field.json_name()],
            "properties": {
                field.json_name(): { "allOf": [{ "not": { "type": "null" } }, schema] },
            },
        });
    }
    schema
}

/// The schema a present, non-null JSON value of the atom's leaf satisfies
/// exactly when the atom holds.
fn leaf_schema(atom: &Expr) -> Result<Json, String> {
    let bounds = |op: Cmp, n: i64, min: &str, max: &str| -> Json {
        match op {
            Cmp::Eq => json!({ min: n, max: n }),
            Cmp::Ne => json!({ "not": { min: n, max: n } }),
            Cmp::Lt if n == 0 => json!({ "not": {} }),
            Cmp::Lt => json!({ max: n - 1 }),
            Cmp::Le => json!({ max: n }),
            Cmp::Gt => json!({ min: n + 1 }),
            Cmp::Ge => json!({ min: n }),
        }
    };
    // A condition on a `Struct` member: the object has the key, with a
    // string that satisfies `member` when one is given.
    let struct_member = |key: &str, member: Option<Json>| -> Json {
        let mut schema = json!({ "type": "object", "required": [key] });
        if let Some(member) = member {
            schema["properties"] = json!({ key: member });
        }
        schema
    };
    Ok(match atom {
        Expr::HasMember(_, key) => struct_member(key, None),
        Expr::MemberMatches(_, key, pattern) => struct_member(
            key,
            Some(json!({ "type": "string", "pattern": pattern.as_str() })),
        ),
        Expr::Compare(Operand::MemberSize(_, key), op, Literal::Int(n)) => {
            let mut member = bounds(*op, *n, "minLength", "maxLength");
            member["type"] = json!("string");
            struct_member(key, Some(member))
        }
        Expr::Has(path) => {
            let field = leaf(path);
            if field.is_list() {
                json!({ "minItems": 1 })
            } else {
                match field.kind() {
                    Kind::Message(_) => json!({ "type": "object" }),
                    Kind::String | Kind::Bytes => json!({ "minLength": 1 }),
                    Kind::Bool => json!({ "const": true }),
                    Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => {
                        json!({ "not": { "const": 0 } })
                    }
                    Kind::Enum(descriptor) => {
                        let zero = descriptor
                            .get_value(0)
                            .map_or_else(|| json!(0), |v| json!(v.name()));
                        json!({ "not": { "enum": [zero, 0] } })
                    }
                    kind => return Err(format!("has() of a {kind:?} field")),
                }
            }
        }
        Expr::Matches(_, pattern) => json!({ "type": "string", "pattern": pattern.as_str() }),
        Expr::Compare(Operand::Size(path), op, Literal::Int(n)) => {
            if leaf(path).is_list() {
                bounds(*op, *n, "minItems", "maxItems")
            } else if leaf(path).kind() == Kind::String {
                bounds(*op, *n, "minLength", "maxLength")
            } else {
                return Err("size() of bytes is not rendered in JSON Schema".into());
            }
        }
        Expr::Compare(Operand::Field(_), op, literal) => {
            let value = match literal {
                Literal::Int(n) => {
                    if !matches!(op, Cmp::Eq | Cmp::Ne) {
                        return Ok(bounds(*op, *n, "minimum", "maximum"));
                    }
                    json!([n])
                }
                Literal::Str(s) => json!([s]),
                Literal::Bool(b) => json!([b]),
                Literal::Enum(number, name) => json!([name, number]),
            };
            match op {
                Cmp::Eq => json!({ "enum": value }),
                _ => json!({ "not": { "enum": value } }),
            }
        }
        _ => return Err("not a condition on one field".into()),
    })
}
