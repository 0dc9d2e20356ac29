//! IBANs (mod-97) and payment card numbers (Luhn).

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::checksum::{iban_length, iban_mod97, iban_valid, luhn_valid};
use crate::text::{before, continues_number_before, next_char, prev_char};

/// Country, check digits, then letters and digits, optionally in groups.
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,32}"));

static IBAN_CUE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)(?-u:\b)iban(?-u:\b)"));

/// Finds IBANs: the country's registry length and a valid mod-97 checksum
/// (0.99); the right length after the word "IBAN" with a bad checksum (0.6,
/// likely a typo of a real account); or, when the length does not fit the
/// registry, the whole group chain passing mod-97 (0.8: a random string
/// passes one time in 97, and registry lengths do change).
pub(crate) fn ibans(text: &str, out: &mut Vec<Candidate>) {
    for m in IBAN.find_iter(text) {
        let start = m.start();
        if prev_char(text, start).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        if let Some(c) = registry_iban(text, start, m.as_str()) {
            out.push(c);
            continue;
        }
        // The whole chain, trailing single spaces excluded.
        let end = start + m.as_str().trim_end().len();
        let compact: String = text[start..end].chars().filter(|c| *c != ' ').collect();
        if (15..=34).contains(&compact.len())
            && !next_char(text, end).is_some_and(|c| c.is_alphanumeric())
            && iban_mod97(&compact) == Some(1)
        {
            out.push(Candidate {
                kind: PiiKind::BankAccount,
                start,
                end,
                confidence: 0.8,
            });
        }
    }
}

/// An IBAN of the registry length of its country starting at `start`.
fn registry_iban(text: &str, start: usize, chain: &str) -> Option<Candidate> {
    let len = iban_length(&text[start..start + 2])?;
    // Walk the chain until `len` characters, skipping single spaces.
    let mut compact = String::with_capacity(len);
    let mut end = start;
    for (i, c) in chain.char_indices() {
        if c != ' ' {
            compact.push(c);
            if compact.len() == len {
                end = start + i + c.len_utf8();
                break;
            }
        }
    }
    if compact.len() != len || next_char(text, end).is_some_and(|c| c.is_alphanumeric()) {
        return None;
    }
    let confidence = if iban_valid(&compact) {
        0.99
    } else if IBAN_CUE.is_match(before(text, start, 24)) {
        0.6
    } else {
        return None;
    };
    Some(Candidate {
        kind: PiiKind::BankAccount,
        start,
        end,
        confidence,
    })
}

/// Runs of digits separated by single spaces or dashes.
static DIGIT_CHAIN: LazyLock<Regex> = LazyLock::new(|| re(r"\d+(?:[ \-]\d+)*"));

static CARD_CUE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)(?:card|visa|mastercard|amex|debit|credit|pan)(?-u:\b)"));

/// Whether the digit groups look like a card number as printed: one block,
/// or 4-4-4-(1–4)[-(1–4)] groups, or Amex/Diners 4-6-5 / 4-6-4.
fn card_grouping(groups: &[&str]) -> bool {
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    match lens.as_slice() {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [4, middle @ .., last] if !middle.is_empty() => {
            middle.iter().all(|&l| l == 4) && (1..=4).contains(last)
        }
        _ => false,
    }
}

/// Finds payment card numbers: 13–19 digits starting 2–6 (the card
/// networks), printed as one block or in card-style groups with one kind of
/// separator, passing Luhn, not part of a longer number or a list of years.
pub(crate) fn cards(text: &str, out: &mut Vec<Candidate>) {
    for m in DIGIT_CHAIN.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        let s = m.as_str();
        if !matches!(s.as_bytes().first(), Some(b'2'..=b'6'))
            || continues_number_before(text, start, &[' ', '-', '.', ','])
            || prev_char(text, start).is_some_and(|c| c == '+' || c.is_alphabetic())
            || next_char(text, end).is_some_and(|c| c.is_alphanumeric())
        {
            continue;
        }
        let has_space = s.contains(' ');
        let has_dash = s.contains('-');
        if has_space && has_dash {
            continue;
        }
        let groups: Vec<&str> = s.split([' ', '-']).collect();
        if !card_grouping(&groups) {
            continue;
        }
        if groups.len() > 1
            && groups
                .iter()
                .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")))
        {
            continue;
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if !luhn_valid(&digits) {
            continue;
        }
        let confidence = if CARD_CUE.is_match(before(text, start, 40)) {
            0.97
        } else {
            0.9
        };
        out.push(Candidate {
            kind: PiiKind::CardNumber,
            start,
            end,
            confidence,
        });
    }
}

/// "sort code 20-00-00".
static SORT_CODE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i:(?-u:\b)sort\s*code(?-u:\b))\s*[:#]?\s*(\d{2}[\- ]?\d{2}[\- ]?\d{2})(?-u:\b)")
});

/// "account number 12345678", "a/c no. 12345678".
static ACCOUNT_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i:(?-u:\b)(?:account|acc(?:t)?\.?|a/c)\s*(?:no\.?|number|num\.?|#)?)\s*[:#]?\s*(\d{8})(?-u:\b)",
    )
});

/// Finds UK sort codes and eight-digit account numbers, each only after
/// its cue.
pub(crate) fn uk_accounts(text: &str, out: &mut Vec<Candidate>) {
    for re in [&*SORT_CODE, &*ACCOUNT_NUMBER] {
        for c in re.captures_iter(text) {
            let Some(tok) = c.get(1) else { continue };
            if next_char(text, tok.end()).is_some_and(|c| c.is_alphanumeric() || c == '-') {
                continue;
            }
            out.push(Candidate {
                kind: PiiKind::BankAccount,
                start: tok.start(),
                end: tok.end(),
                confidence: 0.85,
            });
        }
    }
}
