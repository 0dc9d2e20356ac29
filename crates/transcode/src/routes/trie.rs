//! The segment trie of one HTTP method.
//!
//! Each node has literal children, at most one `*` child, and the routes
//! that end there (exactly, or with a `**` that takes the rest), keyed by
//! verb. Lookup walks the request segments depth first, trying the literal
//! child, then the `*` child, then a `**` route, and backtracks on a dead
//! end: the first route found is the most specific one, segment by segment
//! from the left. Depth is bounded by the longest template, so a request
//! with many segments costs no more than the templates allow.

use std::borrow::Cow;
use std::collections::HashMap;

use percent_encoding::percent_decode_str;

use crate::template::Segment;

/// A trie node; `ends` and `catch_all` hold route indexes by verb.
#[derive(Debug, Default)]
pub(super) struct Node {
    literals: HashMap<String, Node>,
    wildcard: Option<Box<Node>>,
    ends: Vec<(Option<String>, usize)>,
    catch_all: Vec<(Option<String>, usize)>,
}

impl Node {
    /// Adds `route` under `segments` and `verb`; on a clash returns the route
    /// already there.
    pub(super) fn insert(
        &mut self,
        segments: &[Segment],
        verb: Option<&str>,
        route: usize,
    ) -> Result<(), usize> {
        let mut node = self;
        for segment in segments {
            node = match segment {
                Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                Segment::Wildcard => node.wildcard.get_or_insert_with(Box::default),
                Segment::CatchAll => return put(&mut node.catch_all, verb, route),
            };
        }
        put(&mut node.ends, verb, route)
    }

    /// The most specific route matching the raw (still percent-encoded)
    /// `segments` with `verb`.
    pub(super) fn find(&self, segments: &[&str], verb: Option<&str>) -> Option<usize> {
        if let Some((first, rest)) = segments.split_first() {
            if let Some(child) = decode(first).and_then(|text| self.literals.get(text.as_ref()))
                && let Some(route) = child.find(rest, verb)
            {
                return Some(route);
            }
            if !first.is_empty()
                && let Some(child) = &self.wildcard
                && let Some(route) = child.find(rest, verb)
            {
                return Some(route);
            }
        } else if let Some(route) = get(&self.ends, verb) {
            return Some(route);
        }
        get(&self.catch_all, verb)
    }
}

fn put(
    slots: &mut Vec<(Option<String>, usize)>,
    verb: Option<&str>,
    route: usize,
) -> Result<(), usize> {
    if let Some(existing) = get(slots, verb) {
        return Err(existing);
    }
    slots.push((verb.map(str::to_owned), route));
    Ok(())
}

fn get(slots: &[(Option<String>, usize)], verb: Option<&str>) -> Option<usize> {
    slots
        .iter()
        .find(|(slot, _)| slot.as_deref() == verb)
        .map(|(_, route)| *route)
}

/// The fully decoded segment, for comparing with literals; `None` when it
/// does not decode to UTF-8 (then no literal can match).
fn decode(segment: &str) -> Option<Cow<'_, str>> {
    if segment.contains('%') {
        percent_decode_str(segment).decode_utf8().ok()
    } else {
        Some(Cow::Borrowed(segment))
    }
}
