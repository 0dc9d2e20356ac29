//! E-mail addresses and phone numbers.

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::text::{continues_number_after, continues_number_before, next_char, prev_char};

/// A whole e-mail address (Unicode local parts and domains allowed),
/// checked on the text around each `@`.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?i)[\p{L}\p{N}](?:[\p{L}\p{N}._%+\-]*[\p{L}\p{N}_%+\-])?@(?:[\p{L}\p{N}](?:[\p{L}\p{N}\-]{0,61}[\p{L}\p{N}])?\.)+\p{L}{2,24}",
    )
});

/// `[at]`, `(at)`, `{at}` or `<at>`: the anchor of an obfuscated address.
static AT_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\s*[\[({<]\s*at\s*[\])}>]\s*"));

/// The domain of an obfuscated address, `gmail [dot] com` or `gmail.com`,
/// anchored right after the `[at]`.
static OBFUSCATED_DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?i)[a-z0-9][a-z0-9\-]*(?:(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\.)[a-z0-9\-]*[a-z0-9])+")
});

/// Characters of a local part (before the `@`).
fn local_char(c: char) -> bool {
    c.is_alphanumeric() || "._%+-".contains(c)
}

/// Characters of a domain (after the `@`).
fn domain_char(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}

/// The start of the local part that ends at byte `at`: at most 64 local
/// characters, not starting with a dot or dash.
fn local_start(text: &str, at: usize) -> usize {
    let mut start = at;
    for (n, (i, c)) in text[..at].char_indices().rev().enumerate() {
        if n == 64 || !local_char(c) {
            break;
        }
        start = i;
    }
    let trimmed = text[start..at].trim_start_matches(['.', '-', '+', '%']);
    at - trimmed.len()
}

/// Finds e-mail addresses (Unicode local parts and domains allowed), plain
/// and obfuscated. Works outward from each `@` (or `[at]`), so the cost is
/// linear in the text.
pub(crate) fn emails(text: &str, out: &mut Vec<Candidate>) {
    for (at, _) in text.match_indices('@') {
        let start = local_start(text, at);
        let mut end = at + 1;
        for (i, c) in text[at + 1..].char_indices() {
            if i >= 255 || !domain_char(c) {
                break;
            }
            end = at + 1 + i + c.len_utf8();
        }
        // A full stop or dash after the address is not part of it.
        end = start + text[start..end].trim_end_matches(['.', '-']).len();
        if start == at || end <= at + 1 {
            continue;
        }
        let Some(m) = EMAIL.find(&text[start..end]) else {
            continue;
        };
        let end = start + m.end();
        if next_char(text, end).is_some_and(|c| c == '@') {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::Email,
            start,
            end,
            confidence: 0.99,
        });
    }
    for m in AT_WORD.find_iter(text) {
        let start = local_start(text, m.start());
        if start == m.start() || !text[start..m.start()].starts_with(|c: char| c.is_alphanumeric())
        {
            continue;
        }
        let Some(d) = OBFUSCATED_DOMAIN.find(&text[m.end()..]) else {
            continue;
        };
        out.push(Candidate {
            kind: PiiKind::Email,
            start,
            end: m.end() + d.end(),
            confidence: 0.85,
        });
    }
}

/// A UK number in national format: `07700 900123`, `020 7946 0018`,
/// `(0121) 496 0000`, `07700900123`.
static UK_NATIONAL: LazyLock<Regex> =
    LazyLock::new(|| re(r"\(?0[1-9]\d{1,4}\)?(?:[ \-]?\d{3,6}){1,3}"));

/// An international number: `+44 7911 123456`, `+44 (0)20 7946 0321`,
/// `0040 721 234 567`.
static INTERNATIONAL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\+|(?-u:\b)00)[1-9]\d{0,14}(?:(?:[ \-.]|[ ]?\(0\)[ ]?)\d{1,6}){0,6}"));

/// Published, non-personal numbers that are not PII: the Modern Slavery &
/// Exploitation Helpline, Crimestoppers, Childline, NSPCC, the National
/// Domestic Abuse Helpline and Samaritans (digits only).
const PUBLIC_NUMBERS: &[&str] = &[
    "08000121700",
    "0800555111",
    "08001111",
    "08088005000",
    "08082000247",
    "116123",
];

/// Digit groups of a phone match: for each group, the byte offset just past
/// it and the number of digits so far. `(0)` trunk prefixes are skipped.
fn groups(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let s = &text[start..end];
    let mut out = Vec::new();
    let mut digits = 0;
    let mut in_group = false;
    let mut skip_trunk = false;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'(' && bytes.get(i + 1) == Some(&b'0') && bytes.get(i + 2) == Some(&b')') {
            skip_trunk = true;
        }
        if b.is_ascii_digit() {
            if !skip_trunk {
                digits += 1;
            }
            in_group = true;
        } else {
            if in_group && !skip_trunk {
                out.push((start + i, digits));
            }
            if b == b')' {
                skip_trunk = false;
            }
            in_group = false;
        }
    }
    if in_group && !skip_trunk {
        out.push((end, digits));
    }
    out
}

fn digits_of(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

const NUMBER_SEPS: &[char] = &[' ', '-', '.', ',', '/'];

/// Finds UK and international phone numbers. Requires a leading `0`, `+`
/// or `00`, a plausible digit count at a group boundary, and no digits
/// glued to either side, so years, amounts, percentages and statistics are
/// not phone numbers.
pub(crate) fn phones(text: &str, out: &mut Vec<Candidate>) {
    for m in UK_NATIONAL.find_iter(text) {
        let mut start = m.start();
        let s = m.as_str();
        if s.starts_with('(') && !s.contains(')') {
            start += 1;
        } else if !s.starts_with('(') && s.contains(')') {
            continue;
        }
        if continues_number_before(text, start, NUMBER_SEPS)
            || prev_char(text, start).is_some_and(|c| "£$€+#".contains(c))
        {
            continue;
        }
        let gs = groups(text, start, m.end());
        let pick = gs
            .iter()
            .find(|g| g.1 == 11)
            .or_else(|| gs.iter().find(|g| g.1 == 10));
        let Some(&(end, n)) = pick else { continue };
        if continues_number_after(text, end, &['.', ',']) || next_char(text, end) == Some('%') {
            continue;
        }
        let digits = digits_of(&text[start..end]);
        if PUBLIC_NUMBERS.contains(&digits.as_str()) {
            continue;
        }
        // 04 and 06 are not used; mobiles (07) have 11 digits.
        if digits.starts_with("04")
            || digits.starts_with("06")
            || (digits.starts_with("07") && n != 11)
        {
            continue;
        }
        let confidence = if digits.starts_with("07") { 0.95 } else { 0.85 };
        out.push(Candidate {
            kind: PiiKind::Phone,
            start,
            end,
            confidence,
        });
    }
    for m in INTERNATIONAL.find_iter(text) {
        let start = m.start();
        if prev_char(text, start).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        // Digits counted by `groups` include the `00` of `00 44 …`.
        let (prefix_len, extra) = if m.as_str().starts_with('+') {
            (1, 0)
        } else {
            (2, 2)
        };
        let gs = groups(text, start, m.end());
        let pick = if text[start + prefix_len..].starts_with("44") {
            // +44, then 10 (or 9) national digits without the trunk 0.
            let with = |n: usize| gs.iter().find(|g| g.1 == n + extra);
            with(12).or_else(|| with(11))
        } else {
            gs.iter()
                .rev()
                .find(|g| (8 + extra..=15 + extra).contains(&g.1))
        };
        let Some(&(end, _)) = pick else { continue };
        if continues_number_after(text, end, &['.', ',']) || next_char(text, end) == Some('%') {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::Phone,
            start,
            end,
            confidence: 0.9,
        });
    }
}
