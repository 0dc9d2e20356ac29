//! The quality checks run on every version (see `kj-contract`): section
//! order, key judgement, headline card and red flag counts, word count, the
//! fixed disclaimer, and citations.
//!
//! Each check is blocking or advisory ([`QualityKind::is_blocking`]):
//! SubmitReport refuses a version failing a blocking one (key judgement
//! count, headline card count, word count, disclaimer, citations) unless an
//! admin overrides it with a justification; section order and red flag
//! count are advisory. A draft generated without usable sources has no
//! citation markers, so it fails [`QualityKind::ClaimsCited`] and cannot be
//! submitted uncited.

use std::collections::HashSet;

use crate::model::{Content, DISCLAIMER, Pillar, QualityCheck, QualityKind, Section};

/// Fewest and most words in a report.
pub const WORDS: std::ops::RangeInclusive<usize> = 2_000..=3_000;
/// Fewest and most key judgements (and red flags).
pub const JUDGEMENTS: std::ops::RangeInclusive<usize> = 5..=10;

/// Runs every check on `content`, blocking and advisory alike.
pub fn checks(content: &Content) -> Vec<QualityCheck> {
    vec![
        section_order(content),
        key_judgement_count(content),
        headline_card_count(content),
        word_count_check(content),
        disclaimer_present(content),
        claims_cited(content),
        red_flag_count(content),
    ]
}

fn check(kind: QualityKind, passed: bool, detail: impl Into<String>) -> QualityCheck {
    QualityCheck {
        kind,
        passed,
        detail: detail.into(),
    }
}

fn section_order(content: &Content) -> QualityCheck {
    let t = &content.title_block;
    let missing: Vec<&str> = Section::ALL
        .into_iter()
        .filter(|s| match s {
            Section::TitleBlock => t.title.trim().is_empty() || t.overview.trim().is_empty(),
            other => content.section_is_empty(*other),
        })
        .map(Section::as_str)
        .collect();
    if missing.is_empty() {
        check(
            QualityKind::SectionOrder,
            true,
            "all sections present in order",
        )
    } else {
        check(
            QualityKind::SectionOrder,
            false,
            format!("missing or empty: {}", missing.join(", ")),
        )
    }
}

fn key_judgement_count(content: &Content) -> QualityCheck {
    let n = content.key_judgements.len();
    let lettered = content
        .key_judgements
        .iter()
        .enumerate()
        .all(|(i, kj)| kj.letter == ((b'A' + (i as u8 % 26)) as char).to_string());
    let passed = JUDGEMENTS.contains(&n) && lettered;
    let detail = if !lettered {
        format!("{n} key judgements, not lettered A, B, C… in order")
    } else {
        format!("{n} key judgements")
    };
    check(QualityKind::KeyJudgementCount, passed, detail)
}

fn headline_card_count(content: &Content) -> QualityCheck {
    let n = content.headline_cards.len();
    let pillars: HashSet<Pillar> = content.headline_cards.iter().map(|c| c.pillar).collect();
    let passed = n == 3
        && [Pillar::Recruitment, Pillar::Demand, Pillar::Money]
            .iter()
            .all(|p| pillars.contains(p));
    let detail = if passed {
        "3 headline cards, one per pillar".to_owned()
    } else {
        format!("{n} headline cards; needs exactly one each for recruitment, demand and money")
    };
    check(QualityKind::HeadlineCardCount, passed, detail)
}

fn red_flag_count(content: &Content) -> QualityCheck {
    let n = content.red_flag_indicators.len();
    check(
        QualityKind::RedFlagCount,
        JUDGEMENTS.contains(&n),
        format!("{n} red flag indicators"),
    )
}

/// Whitespace-separated words of every text field of every section,
/// disclaimer included (citation markers count as words).
pub fn word_count(content: &Content) -> usize {
    let mut copy = content.clone();
    let mut total = 0;
    for section in Section::ALL {
        for (path, text) in copy.text_fields_mut(section) {
            if path.starts_with("citations[") || path.starts_with("uncertainty_flags[") {
                continue;
            }
            total += text.split_whitespace().count();
        }
    }
    total
}

fn word_count_check(content: &Content) -> QualityCheck {
    let n = word_count(content);
    check(
        QualityKind::WordCount,
        WORDS.contains(&n),
        format!("{} words", thousands(n)),
    )
}

fn disclaimer_present(content: &Content) -> QualityCheck {
    let passed = content.disclaimer == DISCLAIMER;
    check(
        QualityKind::DisclaimerPresent,
        passed,
        if passed {
            "fixed disclaimer present"
        } else {
            "the fixed disclaimer is missing or changed"
        },
    )
}

/// The citation markers (`[c1]`) in `text`, in order. PII placeholders such
/// as `[NAME]` (all capitals) are not markers.
pub fn markers(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) => {
                let id = &after[..close];
                let valid = !id.is_empty()
                    && id.len() <= 32
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    && !id.bytes().all(|b| b.is_ascii_uppercase());
                if valid {
                    found.push(id);
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    found
}

fn claims_cited(content: &Content) -> QualityCheck {
    let mut problems: Vec<String> = Vec::new();
    let mut copy = content.clone();
    for section in Section::ALL {
        let key = section.as_str();
        // A citation counts only if it names a source.
        let cited: HashSet<&str> = content
            .citations
            .iter()
            .filter(|c| c.section == key && !c.source.source_id.trim().is_empty())
            .map(|c| c.id.as_str())
            .collect();
        for (path, text) in copy.text_fields_mut(section) {
            if path.starts_with("citations[") || path.starts_with("uncertainty_flags[") {
                continue;
            }
            for marker in markers(text) {
                if !cited.contains(marker) {
                    problems.push(format!("[{marker}] in {path} cites nothing in {key}"));
                }
            }
        }
    }
    let needs_marker = |path: String, text: &str, problems: &mut Vec<String>| {
        if markers(text).is_empty() {
            problems.push(format!("claim in {path} not cited"));
        }
    };
    for (i, kj) in content.key_judgements.iter().enumerate() {
        needs_marker(format!("key_judgements[{i}].text"), &kj.text, &mut problems);
    }
    for (i, card) in content.headline_cards.iter().enumerate() {
        needs_marker(
            format!("headline_cards[{i}].detail"),
            &card.detail,
            &mut problems,
        );
    }
    for (name, text) in [
        ("introduction", &content.introduction),
        ("recruitment", &content.recruitment),
        ("demand", &content.demand),
        ("money", &content.money),
    ] {
        for (i, paragraph) in paragraphs(text).enumerate() {
            needs_marker(
                format!("{name} paragraph {}", i + 1),
                paragraph,
                &mut problems,
            );
        }
    }
    let passed = problems.is_empty();
    let detail = match problems.len() {
        0 => "every claim cited".to_owned(),
        1 => problems.remove(0),
        n => format!("{} (and {} more)", problems[0], n - 1),
    };
    check(QualityKind::ClaimsCited, passed, detail)
}

/// Blank-line separated paragraphs with text.
pub fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// `2412` → `2,412`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_skip_placeholders_and_labels() {
        assert_eq!(
            markers("a [c1] b [NAME] [Internal: x, 2024] [c-2]"),
            vec!["c1", "c-2"]
        );
        assert_eq!(thousands(2412), "2,412");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn the_blocking_checks_are_the_five_submit_enforces() {
        let blocking: Vec<QualityKind> = checks(&Content::default())
            .into_iter()
            .map(|c| c.kind)
            .filter(|k| k.is_blocking())
            .collect();
        assert_eq!(
            blocking,
            vec![
                QualityKind::KeyJudgementCount,
                QualityKind::HeadlineCardCount,
                QualityKind::WordCount,
                QualityKind::DisclaimerPresent,
                QualityKind::ClaimsCited,
            ]
        );
    }

    #[test]
    fn a_judgement_without_a_sourced_citation_is_not_cited() {
        use crate::model::{Citation, KeyJudgement, SourceRef};
        let judgement = |text: &str| KeyJudgement {
            letter: "A".into(),
            text: text.into(),
            ..Default::default()
        };
        let mut content = Content {
            key_judgements: vec![judgement("Exploitation is likely to rise.")],
            ..Default::default()
        };
        assert!(!claims_cited(&content).passed);
        content.key_judgements = vec![judgement("Exploitation is likely to rise [c1].")];
        content.citations = vec![Citation {
            id: "c1".into(),
            section: "key_judgements".into(),
            claim: "rise".into(),
            source: SourceRef::default(),
        }];
        let unsourced = claims_cited(&content);
        assert!(!unsourced.passed, "{unsourced:?}");
        content.citations[0].source.source_id = "0191a3c4".into();
        assert!(claims_cited(&content).passed);
    }

    #[test]
    fn an_empty_report_fails_every_check() {
        let checks = checks(&Content::default());
        assert_eq!(checks.len(), 7);
        assert!(
            checks
                .iter()
                .filter(|c| c.kind != QualityKind::ClaimsCited)
                .all(|c| !c.passed),
            "{checks:?}"
        );
    }
}
