//! Dates of birth: a full date (day, month and year) after a birth cue.

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;

const MONTH: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

/// A birth cue ("DOB", "D.O.B.", "date of birth", "birth date", "born",
/// "born on"), a few linking words, then a date.
static DOB: LazyLock<Regex> = LazyLock::new(|| {
    let date = format!(
        concat!(
            r"(\d{{1,2}}[/.\-]\d{{1,2}}[/.\-](?:\d{{4}}|\d{{2}})",
            r"|\d{{4}}-\d{{2}}-\d{{2}}",
            r"|\d{{1,2}}(?:st|nd|rd|th)?\s+{m}\.?,?\s+\d{{4}}",
            r"|{m}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})",
        ),
        m = MONTH
    );
    re(&format!(
        concat!(
            r"(?i)(?-u:\b)(?:d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)",
            r"(?:\s*[:\-–]\s*|\s+|\s*\(\s*)",
            r"(?:(?:is|was|as|of|given\s+as|recorded\s+as|stated\s+as|on)\s+)*",
            r"{date}(?-u:\b)"
        ),
        date = date
    ))
});

/// Whether the numeric date `d/m/y` (or `m/d/y`, or ISO `y-m-d`) has a
/// plausible day and month; dates written with month names always do.
fn plausible(date: &str) -> bool {
    let parts: Vec<&str> = date.split(['/', '.', '-']).collect();
    let [a, b, c] = parts.as_slice() else {
        return true;
    };
    let (Ok(a), Ok(b), Ok(c)) = (a.parse::<u32>(), b.parse::<u32>(), c.parse::<u32>()) else {
        return true;
    };
    let ok = |d: u32, m: u32| (1..=31).contains(&d) && (1..=12).contains(&m);
    if a > 31 {
        ok(c, b)
    } else {
        ok(a, b) || ok(b, a)
    }
}

/// Finds dates of birth: only after a birth cue, so dates of events are
/// not flagged.
pub(crate) fn dates_of_birth(text: &str, out: &mut Vec<Candidate>) {
    for c in DOB.captures_iter(text) {
        let Some(d) = c.get(1) else { continue };
        if !plausible(d.as_str()) {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::DateOfBirth,
            start: d.start(),
            end: d.end(),
            confidence: 0.95,
        });
    }
}
