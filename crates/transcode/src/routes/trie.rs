//! The segment trie of every route, whatever its HTTP method.
//!
//! Each node has literal children, at most one `*` child, and the routes
//! that end there (exactly, or with a `**` that takes the rest), keyed by
//! verb; one slot holds the routes of every method with that shape. Lookup
//! walks the request segments depth first, trying the literal child, then
//! the `*` child, then a `**` slot, and backtracks on a dead end: the first
//! slot found is the most specific shape, segment by segment from the left,
//! whichever methods it has. Depth is bounded by the longest template, so a
//! request with many segments costs no more than the templates allow.

use std::borrow::Cow;
use std::collections::HashMap;

use percent_encoding::percent_decode_str;

use crate::template::Segment;

/// The routes (indexes, of any method) of one shape and verb.
type Slot = (Option<String>, Vec<usize>);

/// A trie node; `ends` and `catch_all` hold route indexes by verb.
#[derive(Debug, Default)]
pub(super) struct Node {
    literals: HashMap<String, Node>,
    wildcard: Option<Box<Node>>,
    ends: Vec<Slot>,
    catch_all: Vec<Slot>,
}

impl Node {
    /// Adds `route` under `segments` and `verb`; when a route already there
    /// `clashes` with it (same HTTP method), returns that route instead.
    pub(super) fn insert(
        &mut self,
        segments: &[Segment],
        verb: Option<&str>,
        route: usize,
        clashes: impl Fn(usize) -> bool,
    ) -> Result<(), usize> {
        let mut node = self;
        for segment in segments {
            node = match segment {
                Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                Segment::Wildcard => node.wildcard.get_or_insert_with(Box::default),
                Segment::CatchAll => return put(&mut node.catch_all, verb, route, clashes),
            };
        }
        put(&mut node.ends, verb, route, clashes)
    }

    /// The routes of the most specific shape matching the raw (still
    /// percent-encoded) `segments` with `verb`, of every method.
    pub(super) fn find(&self, segments: &[&str], verb: Option<&str>) -> Option<&[usize]> {
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
    slots: &mut Vec<Slot>,
    verb: Option<&str>,
    route: usize,
    clashes: impl Fn(usize) -> bool,
) -> Result<(), usize> {
    match slots.iter_mut().find(|(slot, _)| slot.as_deref() == verb) {
        Some((_, routes)) => {
            if let Some(existing) = routes.iter().copied().find(|r| clashes(*r)) {
                return Err(existing);
            }
            routes.push(route);
        }
        None => slots.push((verb.map(str::to_owned), vec![route])),
    }
    Ok(())
}

fn get<'a>(slots: &'a [Slot], verb: Option<&str>) -> Option<&'a [usize]> {
    slots
        .iter()
        .find(|(slot, _)| slot.as_deref() == verb)
        .map(|(_, routes)| routes.as_slice())
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
