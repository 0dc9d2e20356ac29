//! Identity numbers: UK National Insurance, passports and ID cards, UK
//! driving licences, NHS numbers and biometric references.

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::checksum::{nhs_valid, ni_valid};
use crate::text::{before, word_bounded};

/// `AB 12 34 56 C`, `AB123456C`, `AB 123456 C`.
static NI: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?-u:\b)([A-Z]{2})( ?)(\d{2})( ?)(\d{2})( ?)(\d{2}) ?([A-D])(?-u:\b)"));

static NI_CUE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)(?:ni|nino|national\s+insurance)(?-u:\b)"));

/// Finds UK National Insurance numbers with an allocatable prefix (HMRC
/// rules) and consistent spacing.
pub(crate) fn national_insurance(text: &str, out: &mut Vec<Candidate>) {
    for c in NI.captures_iter(text) {
        let (Some(all), Some(s1), Some(s2), Some(s3)) = (c.get(0), c.get(2), c.get(4), c.get(6))
        else {
            continue;
        };
        if s1.as_str() != s2.as_str() || s2.as_str() != s3.as_str() {
            // `AB 123456 C` is allowed: first separator only.
            if !(s2.as_str().is_empty() && s3.as_str().is_empty()) {
                continue;
            }
        }
        let compact: String = all.as_str().chars().filter(|c| *c != ' ').collect();
        if !ni_valid(&compact) || !word_bounded(text, all.start(), all.end()) {
            continue;
        }
        let confidence = if NI_CUE.is_match(before(text, all.start(), 40)) {
            0.98
        } else {
            0.93
        };
        out.push(Candidate {
            kind: PiiKind::NationalId,
            start: all.start(),
            end: all.end(),
            confidence,
        });
    }
}

/// A passport / ID-card / travel-document cue, an optional "no." or
/// "number", then an upper-case token.
static PASSPORT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i:(?-u:\b)(?:passport|travel\s+document|(?:national\s+)?id(?:entity)?\s+card|identity\s+document",
        r"|residence\s+permit|brp|id(?:\s+(?:no\.?|number|nr\.?)|\s*:)))",
        r"(?:'s)?[\s:#,(\-–]*(?i:(?:no\.?|number|nr\.?|num\.?)\s*[:#]?\s*)?",
        r"([A-Z0-9]{6,10})(?-u:\b)",
    ))
});

/// Finds passport-like numbers after a passport or ID cue: 6–10 upper-case
/// letters and digits with at least five digits and at most four letters.
pub(crate) fn passports(text: &str, out: &mut Vec<Candidate>) {
    for c in PASSPORT.captures_iter(text) {
        let Some(tok) = c.get(1) else { continue };
        let s = tok.as_str();
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        let letters = s.len() - digits;
        if digits < 5
            || letters > 4
            || s.bytes().all(|b| b == s.as_bytes()[0])
            || !word_bounded(text, tok.start(), tok.end())
        {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::Passport,
            start: tok.start(),
            end: tok.end(),
            confidence: 0.85,
        });
    }
}

/// DVLA format: five surname characters (padded with 9), six digits
/// (decade, month + 50 for women, day, year), two initials, a digit and two
/// check characters; e.g. `MORGA753116SM9IJ`.
static DRIVING_LICENCE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?-u:\b)([A-Z][A-Z9]{4}) ?(\d{6}) ?([A-Z9]{2}\d[A-Z0-9]{2})(?-u:\b)"));

static LICENCE_CUE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)(?:licen[cs]e|dvla|driver)(?-u:\b)"));

/// Finds UK driving licence numbers with a plausible month and day.
pub(crate) fn driving_licences(text: &str, out: &mut Vec<Candidate>) {
    for c in DRIVING_LICENCE.captures_iter(text) {
        let (Some(all), Some(d)) = (c.get(0), c.get(2)) else {
            continue;
        };
        let d = d.as_str().as_bytes();
        let num = |i: usize| u32::from(d[i] - b'0') * 10 + u32::from(d[i + 1] - b'0');
        let month = num(1);
        let day = num(3);
        if !((1..=12).contains(&month) || (51..=62).contains(&month))
            || !(1..=31).contains(&day)
            || !word_bounded(text, all.start(), all.end())
        {
            continue;
        }
        let confidence = if LICENCE_CUE.is_match(before(text, all.start(), 40)) {
            0.97
        } else {
            0.9
        };
        out.push(Candidate {
            kind: PiiKind::DrivingLicence,
            start: all.start(),
            end: all.end(),
            confidence,
        });
    }
}

/// "NHS number" (or "NHS no.") then ten digits as 3-3-4.
static NHS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i:(?-u:\b)nhs(?:\s+(?:no\.?|number|num\.?))?)\s*[:#]?\s*(\d{3} ?\d{3} ?\d{4})(?-u:\b)")
});

/// A medical record cue then a reference with at least four digits.
static MEDICAL: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i:(?-u:\b)(?:hospital\s+(?:no\.?|number)|mrn|medical\s+record\s+(?:no\.?|number)|patient\s+(?:id|no\.?|number)|chi\s+number))",
        r"\s*[:#]?\s*([A-Z0-9][A-Z0-9\-/]{3,18}[A-Z0-9])(?-u:\b)",
    ))
});

/// Finds NHS numbers (mod-11) and other medical record numbers in context.
pub(crate) fn nhs_numbers(text: &str, out: &mut Vec<Candidate>) {
    for c in NHS.captures_iter(text) {
        let Some(tok) = c.get(1) else { continue };
        let digits: String = tok.as_str().chars().filter(char::is_ascii_digit).collect();
        if !nhs_valid(&digits) {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::MedicalRecord,
            start: tok.start(),
            end: tok.end(),
            confidence: 0.97,
        });
    }
    for c in MEDICAL.captures_iter(text) {
        let Some(tok) = c.get(1) else { continue };
        if tok.as_str().bytes().filter(u8::is_ascii_digit).count() < 4 {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::MedicalRecord,
            start: tok.start(),
            end: tok.end(),
            confidence: 0.75,
        });
    }
}

/// A biometric cue ("fingerprint reference", "Eurodac ID", "DNA profile
/// no.") then a reference.
static BIOMETRIC: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i:(?-u:\b)(?:fingerprints?|biometrics?|ident1|eurodac|dna(?:\s+profile)?|facial\s+image|iris(?:\s+scan)?)",
        r"\s+(?:ref(?:erence)?\.?|record|id|no\.?|number|hit|profile)(?:\s+(?:no\.?|number))?)",
        r"\s*[:#]?\s*([A-Z0-9][A-Z0-9\-/]{4,30}[A-Z0-9])",
    ))
});

/// Finds biometric references (fingerprint, DNA, Eurodac…) in context.
pub(crate) fn biometrics(text: &str, out: &mut Vec<Candidate>) {
    for c in BIOMETRIC.captures_iter(text) {
        let Some(tok) = c.get(1) else { continue };
        if tok.as_str().bytes().filter(u8::is_ascii_digit).count() < 4
            || !word_bounded(text, tok.start(), tok.end())
        {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::Biometric,
            start: tok.start(),
            end: tok.end(),
            confidence: 0.75,
        });
    }
}
