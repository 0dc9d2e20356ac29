//! Deterministic overlap resolution.

use std::collections::BTreeMap;

use crate::rules::Candidate;

/// Keeps a set of non-overlapping candidates and returns it sorted by start.
///
/// Candidates are taken greedily in order of: specificity of the kind
/// (checksum-validated, then context-cued, then plain patterns, then
/// names), then length (longer first), then confidence, then position and
/// kind, so the result does not depend on the order rules ran in. Exact
/// duplicates collapse into one.
pub(crate) fn resolve(mut cands: Vec<Candidate>) -> Vec<Candidate> {
    cands.sort_by(|a, b| {
        b.kind
            .specificity()
            .cmp(&a.kind.specificity())
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(b.confidence.total_cmp(&a.confidence))
            .then(a.start.cmp(&b.start))
            .then(a.kind.cmp(&b.kind))
    });
    // Kept spans are disjoint, so the only one that can overlap a new span
    // is the kept span with the greatest start before the new span's end.
    let mut kept: BTreeMap<usize, Candidate> = BTreeMap::new();
    for c in cands {
        if c.start >= c.end {
            continue;
        }
        let overlaps = kept
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, k)| k.end > c.start);
        if !overlaps {
            kept.insert(c.start, c);
        }
    }
    kept.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PiiKind;

    fn cand(kind: PiiKind, start: usize, end: usize, confidence: f32) -> Candidate {
        Candidate {
            kind,
            start,
            end,
            confidence,
        }
    }

    #[test]
    fn longer_wins_within_a_tier_and_output_is_sorted() {
        let out = resolve(vec![
            cand(PiiKind::Address, 30, 37, 0.85),
            cand(PiiKind::Address, 10, 37, 0.92),
            cand(PiiKind::Email, 0, 5, 0.99),
        ]);
        assert_eq!(
            out,
            vec![
                cand(PiiKind::Email, 0, 5, 0.99),
                cand(PiiKind::Address, 10, 37, 0.92)
            ]
        );
    }

    #[test]
    fn checksum_kinds_beat_patterns_and_names() {
        let out = resolve(vec![
            cand(PiiKind::CardNumber, 5, 24, 0.9),
            cand(PiiKind::BankAccount, 0, 27, 0.99),
            cand(PiiKind::Name, 0, 40, 0.9),
        ]);
        assert_eq!(out, vec![cand(PiiKind::BankAccount, 0, 27, 0.99)]);
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let a = vec![
            cand(PiiKind::Phone, 0, 10, 0.9),
            cand(PiiKind::VehicleId, 0, 10, 0.9),
            cand(PiiKind::Address, 5, 12, 0.8),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(resolve(a), resolve(b));
    }
}
