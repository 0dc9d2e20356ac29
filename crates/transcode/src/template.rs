//! `google.api.http` path templates: parsing and validation.
//!
//! ```text
//! Template = "/" Segments [ ":" Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! ```
//!
//! Restrictions checked here, so a bad template fails at load and never at
//! request time: `**` only as the last segment; variables are not nested and
//! bind a field path at most once; literals and verbs use only unreserved
//! characters and sub-delimiters (no `/ : { } * ? # %` or spaces); no empty
//! segments (`//`, a trailing `/`).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this text, compared with the percent-decoded segment.
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Wildcard,
    /// `**`: zero or more segments; only ever the last segment.
    CatchAll,
}

/// A `{field.path=sub/template}` variable: the field it binds and the
/// segments it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    field_path: Vec<String>,
    segments: Range<usize>,
    single_segment: bool,
}

impl Variable {
    /// The proto field names from the request message down to the bound
    /// field, e.g. `["book", "name"]` for `{book.name}`.
    pub fn field_path(&self) -> &[String] {
        &self.field_path
    }

    /// The field path joined with dots, as written in the template.
    pub fn field_path_string(&self) -> String {
        self.field_path.join(".")
    }

    /// The indexes of the template segments the variable covers.
    pub fn segments(&self) -> Range<usize> {
        self.segments.clone()
    }

    /// True for `{x}` and `{x=*}`: the value is one segment and is fully
    /// percent-decoded (`%2F` becomes `/`). Every other variable keeps `%2F`
    /// encoded, as google.api.http specifies for reserved expansion.
    pub fn is_single_segment(&self) -> bool {
        self.single_segment
    }
}

/// A parsed, validated path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

/// Why a template was refused, with the byte position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template `{template}` at byte {position}: {reason}")]
pub struct TemplateError {
    /// The template as written.
    pub template: String,
    /// Byte offset of the problem.
    pub position: usize,
    /// What is wrong.
    pub reason: String,
}

impl PathTemplate {
    /// Parses and validates `source`.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        Parser {
            src: source,
            pos: 0,
            segments: Vec::new(),
            variables: Vec::new(),
        }
        .template()
    }

    /// The template as written in the proto.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The segments, variables expanded into the segments they cover.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The variables, in template order.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The custom verb after the last `:`, e.g. `cancel`.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// True when the last segment is `**`.
    pub fn ends_with_catch_all(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::CatchAll))
    }
}

impl FromStr for PathTemplate {
    type Err = TemplateError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        Self::parse(source)
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// True for characters allowed in a literal or a verb.
pub(crate) fn is_literal_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()+,;=@".contains(&c)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> TemplateError {
        TemplateError {
            template: self.src.to_owned(),
            position: self.pos,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn template(mut self) -> Result<PathTemplate, TemplateError> {
        if !self.eat(b'/') {
            return Err(self.error("a template starts with `/`"));
        }
        self.segments_until(false)?;
        let verb = if self.eat(b':') {
            let verb = self.literal()?;
            if verb.is_empty() {
                return Err(self.error("empty verb after `:`"));
            }
            Some(verb)
        } else {
            None
        };
        if let Some(c) = self.peek() {
            return Err(self.error(format!("unexpected `{}`", c as char)));
        }
        if let Some(index) = self
            .segments
            .iter()
            .position(|segment| *segment == Segment::CatchAll)
            && index + 1 != self.segments.len()
        {
            return Err(TemplateError {
                template: self.src.to_owned(),
                position: 0,
                reason: "`**` must be the last segment".to_owned(),
            });
        }
        for (index, variable) in self.variables.iter().enumerate() {
            if self.variables[..index]
                .iter()
                .any(|earlier| earlier.field_path == variable.field_path)
            {
                return Err(TemplateError {
                    template: self.src.to_owned(),
                    position: 0,
                    reason: format!("field `{}` is bound twice", variable.field_path.join(".")),
                });
            }
        }
        Ok(PathTemplate {
            source: self.src.to_owned(),
            segments: self.segments,
            variables: self.variables,
            verb,
        })
    }

    /// Segments separated by `/`, up to `:`, `}` or the end.
    fn segments_until(&mut self, in_variable: bool) -> Result<(), TemplateError> {
        loop {
            self.segment(in_variable)?;
            if !self.eat(b'/') {
                return Ok(());
            }
        }
    }

    fn segment(&mut self, in_variable: bool) -> Result<(), TemplateError> {
        match self.peek() {
            Some(b'{') if in_variable => Err(self.error("variables cannot be nested")),
            Some(b'{') => self.variable(),
            Some(b'*') => {
                self.pos += 1;
                if self.eat(b'*') {
                    self.segments.push(Segment::CatchAll);
                } else {
                    self.segments.push(Segment::Wildcard);
                }
                if matches!(self.peek(), Some(c) if c != b'/' && c != b':' && c != b'}') {
                    return Err(self.error("`*` and `**` must be whole segments"));
                }
                Ok(())
            }
            _ => {
                let literal = self.literal()?;
                if literal.is_empty() {
                    return Err(match self.peek() {
                        None | Some(b'/') | Some(b':') | Some(b'}') => self.error("empty segment"),
                        Some(c) => self.error(format!("`{}` is not allowed here", c as char)),
                    });
                }
                self.segments.push(Segment::Literal(literal));
                Ok(())
            }
        }
    }

    fn literal(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_literal_char(c) {
                self.pos += 1;
            } else if matches!(c, b'/' | b':' | b'{' | b'}' | b'*') {
                break;
            } else {
                return Err(self.error(format!(
                    "`{}` is not allowed in a literal",
                    self.src[self.pos..].chars().next().unwrap_or('?')
                )));
            }
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn variable(&mut self) -> Result<(), TemplateError> {
        self.pos += 1; // `{`
        let mut field_path = Vec::new();
        loop {
            let ident = self.ident()?;
            field_path.push(ident);
            if !self.eat(b'.') {
                break;
            }
        }
        let start = self.segments.len();
        if self.eat(b'=') {
            if self.peek() == Some(b'}') {
                return Err(self.error("empty template after `=`"));
            }
            self.segments_until(true)?;
        } else {
            self.segments.push(Segment::Wildcard);
        }
        if !self.eat(b'}') {
            return Err(self.error("expected `}` to close the variable"));
        }
        let segments = start..self.segments.len();
        let single_segment =
            segments.len() == 1 && self.segments[segments.start] == Segment::Wildcard;
        self.variables.push(Variable {
            field_path,
            segments,
            single_segment,
        });
        Ok(())
    }

    fn ident(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok =
                c == b'_' || c.is_ascii_alphabetic() || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a field name"));
        }
        Ok(self.src[start..self.pos].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> PathTemplate {
        PathTemplate::parse(source).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_literals_variables_and_verbs() {
        let template = parse("/v1/{name=orgs/*}/jobs/{job.id}:cancel");
        assert_eq!(
            template.segments(),
            &[
                Segment::Literal("v1".into()),
                Segment::Literal("orgs".into()),
                Segment::Wildcard,
                Segment::Literal("jobs".into()),
                Segment::Wildcard,
            ]
        );
        assert_eq!(template.verb(), Some("cancel"));
        let variables = template.variables();
        assert_eq!(variables[0].field_path(), ["name"]);
        assert_eq!(variables[0].segments(), 1..3);
        assert!(!variables[0].is_single_segment());
        assert_eq!(variables[1].field_path(), ["job", "id"]);
        assert!(variables[1].is_single_segment());
    }

    #[test]
    fn catch_all_may_end_a_template_with_a_verb() {
        let template = parse("/files/{path=**}:download");
        assert!(template.ends_with_catch_all());
        assert_eq!(template.verb(), Some("download"));
    }

    #[test]
    fn refuses_bad_templates_with_a_reason() {
        for (source, reason) in [
            ("api/users", "starts with `/`"),
            ("/api//users", "empty segment"),
            ("/api/users/", "empty segment"),
            ("/a/**/b", "`**` must be the last segment"),
            ("/a/{x=**}/b", "`**` must be the last segment"),
            ("/a/{x={y}}", "nested"),
            ("/a/{x", "expected `}`"),
            ("/a/{}", "expected a field name"),
            ("/a/{x=}", "empty template"),
            ("/a/{x}/{x}", "bound twice"),
            ("/a/b:", "empty verb"),
            ("/a b", "not allowed"),
            ("/a/*x", "whole segments"),
            ("/a/%2F", "not allowed"),
            ("/a/b:c:d", "unexpected `:`"),
        ] {
            let error = PathTemplate::parse(source).expect_err(source);
            assert!(
                error.to_string().contains(reason),
                "{source}: {error} should mention {reason}"
            );
        }
    }
}
