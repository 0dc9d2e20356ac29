//! The detection rules. Each rule scans the whole text with regexes compiled
//! once ([`LazyLock`](std::sync::LazyLock)) and pushes candidates; overlaps
//! are resolved afterwards by [`crate::resolve`].

mod address;
mod contact;
mod datebirth;
mod financial;
mod ids;
mod name;
mod network;
mod vehicle;

use regex::Regex;

use crate::PiiKind;

/// A match before overlap resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

/// Collects the candidates of every rule, unresolved and unsorted.
pub(crate) fn candidates(text: &str) -> Vec<Candidate> {
    let mut out = Vec::new();
    contact::emails(text, &mut out);
    contact::phones(text, &mut out);
    financial::ibans(text, &mut out);
    financial::cards(text, &mut out);
    financial::uk_accounts(text, &mut out);
    ids::national_insurance(text, &mut out);
    ids::passports(text, &mut out);
    ids::driving_licences(text, &mut out);
    ids::nhs_numbers(text, &mut out);
    ids::biometrics(text, &mut out);
    datebirth::dates_of_birth(text, &mut out);
    network::ipv4(text, &mut out);
    network::ipv6(text, &mut out);
    address::addresses(text, &mut out);
    name::names(text, &mut out);
    vehicle::vehicles(text, &mut out);
    out
}

/// Compiles a pattern that is part of this crate; a failure is a bug caught
/// by the unit tests, which touch every rule.
pub(crate) fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(re) => re,
        Err(e) => panic!("treven-pii: invalid built-in pattern: {e}"),
    }
}
