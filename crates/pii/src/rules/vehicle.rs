//! Vehicle identifiers: UK registration marks and VINs.

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::checksum::vin_check_digit_valid;
use crate::text::{before, word_bounded};

/// Current format (2001 on): memory tag, age identifier, three letters;
/// e.g. `LD19 XKP`.
static CURRENT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?-u:\b)([A-HJ-PR-Y][A-HJ-PR-Y])(\d{2}) ?([A-HJ-PR-Z]{3})(?-u:\b)"));

/// Prefix (`R123 ABC`) and suffix (`ABC 123D`) formats; only in context.
static OLDER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?-u:\b)(?:[A-HJ-NPR-Y]\d{1,3} ?[A-HJ-PR-Y]{3}|[A-HJ-PR-Y]{3} ?\d{1,3}[A-HJ-NPR-Y])(?-u:\b)",
    )
});

/// 17 characters without I, O or Q.
static VIN: LazyLock<Regex> = LazyLock::new(|| re(r"(?-u:\b)[A-HJ-NPR-Z0-9]{17}(?-u:\b)"));

static VEHICLE_CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)(?-u:\b)(?:reg(?:istration)?|registered|vrm|vehicle|car|van|lorry|truck|minibus|taxi",
        r"|plates?|anpr|vin|chassis|transit|vivaro|sprinter|bmw|audi|ford|vauxhall|toyota|mercedes)(?-u:\b)",
    ))
});

/// Finds UK registration marks (current format anywhere, older formats
/// after a vehicle cue) and VINs (at least two letters and four digits;
/// the North American check digit raises confidence).
pub(crate) fn vehicles(text: &str, out: &mut Vec<Candidate>) {
    for c in CURRENT.captures_iter(text) {
        let (Some(all), Some(age)) = (c.get(0), c.get(2)) else {
            continue;
        };
        let age: u32 = age.as_str().parse().unwrap_or(0);
        if !((2..=29).contains(&age) || (51..=79).contains(&age))
            || !word_bounded(text, all.start(), all.end())
        {
            continue;
        }
        let cued = VEHICLE_CUE.is_match(before(text, all.start(), 60));
        out.push(Candidate {
            kind: PiiKind::VehicleId,
            start: all.start(),
            end: all.end(),
            confidence: if cued { 0.95 } else { 0.8 },
        });
    }
    for m in OLDER.find_iter(text) {
        if !VEHICLE_CUE.is_match(before(text, m.start(), 40))
            || !word_bounded(text, m.start(), m.end())
        {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::VehicleId,
            start: m.start(),
            end: m.end(),
            confidence: 0.75,
        });
    }
    for m in VIN.find_iter(text) {
        let s = m.as_str();
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        if digits < 4 || s.len() - digits < 2 || !word_bounded(text, m.start(), m.end()) {
            continue;
        }
        let confidence = if vin_check_digit_valid(s) {
            0.95
        } else if VEHICLE_CUE.is_match(before(text, m.start(), 40)) {
            0.9
        } else {
            0.8
        };
        out.push(Candidate {
            kind: PiiKind::VehicleId,
            start: m.start(),
            end: m.end(),
            confidence,
        });
    }
}
