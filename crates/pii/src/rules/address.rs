//! UK street addresses and postcodes.

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::text::{next_char, prev_char, word_bounded};

/// A full UK postcode (outward and inward code), per the Royal Mail format.
const POSTCODE: &str = r"(?:GIR ?0AA|[A-PR-UWYZ](?:[A-HK-Y]\d[ABEHMNPRV-Y]|\d[A-HJKPSTUW]|[A-HK-Y]\d\d?|\d\d?) ?\d[ABD-HJLNP-UW-Z]{2})";

const STREET_TYPES: &str = concat!(
    r"(?:Street|St|Road|Rd|Lane|Ln|Avenue|Ave|Close|Drive|Way|Place|Crescent|Terrace|Grove",
    r"|Gardens|Court|Hill|Square|Parade|Walk|Row|Mews|Green|Rise|View|Boulevard|Estate",
    r"|Park|Yard|Wharf|Quay|Gate|Broadway|Circus|Embankment|Vale|Villas|Buildings|Cottages)"
);

static POSTCODE_RE: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"(?-u:\b){POSTCODE}(?-u:\b)")));

/// `[Flat|Unit N,] [12[A]] Capitalised Words <street type>`: a unit or a
/// house number is required.
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        concat!(
            r"(?-u:\b)(?:(?:Flat|Apartment|Apt\.?|Unit|Room|Suite)\s+\d{{1,4}}[A-Za-z]?,?\s+(?:(\d{{1,4}}[A-Za-z]?(?:[\-–]\d{{1,4}}[A-Za-z]?)?),?\s+)?",
            r"|(\d{{1,4}}[A-Za-z]?(?:[\-–]\d{{1,4}}[A-Za-z]?)?),?\s+)",
            r"((?:\p{{Lu}}[\p{{L}}'’\-]*\s+){{1,3}}{types})(?-u:\b)"
        ),
        types = STREET_TYPES
    ))
});

/// What may follow a street line: `, Town POSTCODE` or ` POSTCODE`.
static TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"^,?\s*(?:\p{{Lu}}\p{{Ll}}+(?:[\s\-]\p{{Lu}}\p{{Ll}}+){{0,2}},?\s+)?{POSTCODE}(?-u:\b)"
    ))
});

/// Street names that are institutions, not addresses.
fn institution(street: &str) -> bool {
    [
        "Crown Court",
        "Magistrates",
        "County Court",
        "High Court",
        "Supreme Court",
        "Court of",
    ]
    .iter()
    .any(|w| street.contains(w))
}

/// Finds street addresses (extended over a following town and postcode)
/// and standalone full postcodes.
pub(crate) fn addresses(text: &str, out: &mut Vec<Candidate>) {
    for c in STREET.captures_iter(text) {
        let (Some(all), Some(street)) = (c.get(0), c.get(3)) else {
            continue;
        };
        let number = c.get(1).or_else(|| c.get(2)).map(|m| m.as_str());
        if number.is_some_and(|n| n.len() == 4 && (n.starts_with("19") || n.starts_with("20")))
            || prev_char(text, all.start()).is_some_and(|c| "£$€#".contains(c))
            || institution(street.as_str())
        {
            continue;
        }
        let mut end = all.end();
        let mut confidence = 0.8;
        if let Some(t) = TAIL.find(&text[end..]) {
            end += t.end();
            confidence = 0.92;
        }
        out.push(Candidate {
            kind: PiiKind::Address,
            start: all.start(),
            end,
            confidence,
        });
    }
    for m in POSTCODE_RE.find_iter(text) {
        if next_char(text, m.end()).is_some_and(|c| c == '-' || c == '/')
            || !word_bounded(text, m.start(), m.end())
        {
            continue;
        }
        let confidence = if m.as_str().contains(' ') { 0.85 } else { 0.7 };
        out.push(Candidate {
            kind: PiiKind::Address,
            start: m.start(),
            end: m.end(),
            confidence,
        });
    }
}
