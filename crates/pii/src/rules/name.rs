//! Person names in context: after a title (Mr, Mrs, Ms, Dr…) or a cue
//! ("named", "called", "known as", "victim", "suspect", "defendant"…).

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::lexicon::{is_org_word, is_stop_word};

/// One name token: `Popescu`, `McDonald`, `Anne-Marie`, `O'Brien`,
/// `Nguyễn`, or an initial `K.`.
const TOKEN: &str = r"(?:\p{Lu}['’]\p{Lu}\p{Ll}+|\p{Lu}\p{Ll}+(?:\p{Lu}\p{Ll}+)?(?:[\-'’]\p{Lu}?\p{Ll}+)*|\p{Lu}\.)";

static TITLED: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?-u:\b)(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lord|Lady)\.?\s+({TOKEN}(?:[ ]{TOKEN}){{0,3}})"
    ))
});

/// Cue words; `(?i)` applies to the cue only, the name must be capitalised.
static CUED: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        concat!(
            r"(?i:(?-u:\b)(named|called|known\s+as|aka|a\.k\.a\.|alias|victim|suspect|defendant|witness",
            r"|trafficker|controller|recruiter|offender|survivor|accused|perpetrator|partner|brother",
            r"|sister|mother|father|son|daughter|husband|wife|boyfriend|girlfriend|cousin|uncle",
            r"|aunt|nephew|niece)(?-u:\b))",
            r"(?:\s*[,:])?\s*(?i:(?:as|is|was)\s+)?[\x22“‘']?",
            r"({token}(?:[ ]{token}){{0,3}})"
        ),
        token = TOKEN
    ))
});

/// Cuts the token sequence at the first organisation word; rejects it when
/// its first word is a stop word or when no full token is left.
fn clean(start: usize, seq: &str) -> Option<(usize, usize)> {
    let mut end = start;
    let mut offset = 0;
    let mut full_tokens = 0;
    for (i, tok) in seq.split(' ').enumerate() {
        if i == 0 && is_stop_word(tok) || i > 0 && is_org_word(tok) {
            break;
        }
        if !tok.ends_with('.') {
            full_tokens += 1;
        }
        end = start + offset + tok.len();
        offset += tok.len() + 1;
    }
    (full_tokens > 0).then_some((start, end))
}

/// Finds names after titles and cues, skipping organisations, places,
/// nationalities and calendar words.
pub(crate) fn names(text: &str, out: &mut Vec<Candidate>) {
    for c in TITLED.captures_iter(text) {
        let Some(seq) = c.get(1) else { continue };
        if let Some((start, end)) = clean(seq.start(), seq.as_str()) {
            out.push(Candidate {
                kind: PiiKind::Name,
                start,
                end,
                confidence: 0.9,
            });
        }
    }
    for c in CUED.captures_iter(text) {
        let (Some(cue), Some(seq)) = (c.get(1), c.get(2)) else {
            continue;
        };
        let Some((start, end)) = clean(seq.start(), seq.as_str()) else {
            continue;
        };
        let cue = cue.as_str().to_lowercase();
        let confidence = if ["named", "called", "aka", "a.k.a.", "alias"].contains(&cue.as_str())
            || cue.starts_with("known")
        {
            0.8
        } else {
            0.75
        };
        out.push(Candidate {
            kind: PiiKind::Name,
            start,
            end,
            confidence,
        });
    }
}
