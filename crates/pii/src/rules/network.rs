//! IPv4 and IPv6 addresses.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, re};
use crate::PiiKind;
use crate::text::{after, before, next_char, prev_char};

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
});

/// Words before a dotted number that make it a section, version or table
/// number rather than an address.
static NUMBERING_CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)(?-u:\b)(?:sections?|s\.|ss\.|para(?:graph)?s?\.?|clauses?|articles?|art\.|chapters?|tables?",
        r"|figures?|fig\.|annex(?:es)?|appendix|versions?|v|rules?|regulations?|reg\.|schedules?",
        r"|steps?|items?|standards?|iso|release|build)\s*$",
    ))
});

static IP_CUE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)(?:ip|ipv4|address|host|server)(?-u:\b)"));

/// Finds IPv4 addresses that are not section or version numbers.
pub(crate) fn ipv4(text: &str, out: &mut Vec<Candidate>) {
    for m in IPV4.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        if prev_char(text, start).is_some_and(|c| c.is_alphanumeric() || c == '.')
            || next_char(text, end).is_some_and(|c| c.is_alphanumeric())
            || after(text, end, 2).starts_with('.')
                && after(text, end, 2)
                    .chars()
                    .nth(1)
                    .is_some_and(|c| c.is_ascii_digit())
        {
            continue;
        }
        let window = before(text, start, 24);
        if NUMBERING_CUE.is_match(window) {
            continue;
        }
        // 3.1.2.4 is a paragraph number unless the text says it is an IP.
        let small = m.as_str().split('.').all(|o| o.len() == 1);
        if small && !IP_CUE.is_match(before(text, start, 40)) {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::IpAddress,
            start,
            end,
            confidence: 0.9,
        });
    }
}

static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.\d{1,3}\.\d{1,3}\.\d{1,3})?")
});

/// Finds IPv6 addresses, validated by the standard library parser (so
/// times like `10:30:00` and ratios are rejected).
pub(crate) fn ipv6(text: &str, out: &mut Vec<Candidate>) {
    for m in IPV6.find_iter(text) {
        let start = m.start();
        let mut end = m.end();
        if prev_char(text, start).is_some_and(|c| c.is_alphanumeric() || c == ':')
            || next_char(text, end).is_some_and(|c| c.is_alphanumeric())
        {
            continue;
        }
        let mut s = m.as_str();
        let mut parsed = s.parse::<Ipv6Addr>();
        if parsed.is_err() && s.ends_with(':') && !s.ends_with("::") {
            s = &s[..s.len() - 1];
            end -= 1;
            parsed = s.parse::<Ipv6Addr>();
        }
        let Ok(addr) = parsed else { continue };
        if addr.is_unspecified() || s.chars().filter(char::is_ascii_hexdigit).count() < 3 {
            continue;
        }
        out.push(Candidate {
            kind: PiiKind::IpAddress,
            start,
            end,
            confidence: 0.9,
        });
    }
}
