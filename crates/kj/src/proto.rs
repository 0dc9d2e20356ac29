//! Conversions between the KJ content model and
//! `treven.reports.v1.ReportContent` (and its parts). Unknown enum values
//! from the wire become unset; a malformed timestamp becomes no date.

use treven_mesh::wire::{from_timestamp, timestamp};
use treven_proto::treven::reports::v1 as pb;

use crate::{
    Citation, Confidence, Content, HeadlineCard, KeyJudgement, Pillar, SectionKey, SourceRef,
    TitleBlock, UncertaintyFlag,
};

/// A proto confidence (unknown values: unrated).
pub fn confidence_from_pb(raw: i32) -> Confidence {
    match pb::Confidence::try_from(raw) {
        Ok(pb::Confidence::Low) => Confidence::Low,
        Ok(pb::Confidence::Medium) => Confidence::Medium,
        Ok(pb::Confidence::High) => Confidence::High,
        _ => Confidence::Unspecified,
    }
}

/// A confidence as its proto value.
pub fn confidence_to_pb(c: Confidence) -> pb::Confidence {
    match c {
        Confidence::Unspecified => pb::Confidence::Unspecified,
        Confidence::Low => pb::Confidence::Low,
        Confidence::Medium => pb::Confidence::Medium,
        Confidence::High => pb::Confidence::High,
    }
}

/// A proto pillar (unknown values: unset).
pub fn pillar_from_pb(raw: i32) -> Pillar {
    match pb::Pillar::try_from(raw) {
        Ok(pb::Pillar::Recruitment) => Pillar::Recruitment,
        Ok(pb::Pillar::Demand) => Pillar::Demand,
        Ok(pb::Pillar::Money) => Pillar::Money,
        _ => Pillar::Unspecified,
    }
}

/// A pillar as its proto value.
pub fn pillar_to_pb(p: Pillar) -> pb::Pillar {
    match p {
        Pillar::Unspecified => pb::Pillar::Unspecified,
        Pillar::Recruitment => pb::Pillar::Recruitment,
        Pillar::Demand => pb::Pillar::Demand,
        Pillar::Money => pb::Pillar::Money,
    }
}

/// A proto source reference.
pub fn source_from_pb(s: pb::SourceReference) -> SourceRef {
    SourceRef {
        source_id: s.source_id,
        label: s.label,
        url: s.url,
    }
}

/// A source reference as proto.
pub fn source_to_pb(s: &SourceRef) -> pb::SourceReference {
    pb::SourceReference {
        source_id: s.source_id.clone(),
        label: s.label.clone(),
        url: s.url.clone(),
    }
}

/// Proto content as domain content (unknown enum values become unset).
pub fn content_from_pb(c: pb::ReportContent) -> Content {
    let t = c.title_block.unwrap_or_default();
    Content {
        title_block: TitleBlock {
            title: t.title,
            country_region: t.country_region,
            sector_theme: t.sector_theme,
            issued_at: t
                .issued_at
                .as_ref()
                .and_then(|ts| from_timestamp("issued_at", ts).ok()),
            issue_number: t.issue_number,
            overview: t.overview,
        },
        key_judgements: c
            .key_judgements
            .into_iter()
            .map(|k| KeyJudgement {
                letter: k.letter,
                text: k.text,
                confidence: confidence_from_pb(k.confidence),
            })
            .collect(),
        disclaimer: c.disclaimer,
        introduction: c.introduction,
        recruitment: c.recruitment,
        demand: c.demand,
        money: c.money,
        red_flag_indicators: c.red_flag_indicators,
        information_requirements: c.information_requirements,
        headline_cards: c
            .headline_cards
            .into_iter()
            .map(|h| HeadlineCard {
                pillar: pillar_from_pb(h.pillar),
                headline: h.headline,
                detail: h.detail,
            })
            .collect(),
        citations: c
            .citations
            .into_iter()
            .map(|c| Citation {
                id: c.id,
                section: c.section,
                claim: c.claim,
                source: source_from_pb(c.source.unwrap_or_default()),
            })
            .collect(),
        uncertainty_flags: c
            .uncertainty_flags
            .into_iter()
            .map(|f| UncertaintyFlag {
                section: f.section,
                field_path: f.field_path,
                confidence: confidence_from_pb(f.confidence),
                reason: f.reason,
            })
            .collect(),
    }
}

/// Domain content as proto content.
pub fn content_to_pb(c: &Content) -> pb::ReportContent {
    let t = &c.title_block;
    pb::ReportContent {
        title_block: Some(pb::TitleBlock {
            title: t.title.clone(),
            country_region: t.country_region.clone(),
            sector_theme: t.sector_theme.clone(),
            issued_at: t.issued_at.map(timestamp),
            issue_number: t.issue_number,
            overview: t.overview.clone(),
        }),
        key_judgements: c
            .key_judgements
            .iter()
            .map(|k| pb::KeyJudgement {
                letter: k.letter.clone(),
                text: k.text.clone(),
                confidence: confidence_to_pb(k.confidence).into(),
            })
            .collect(),
        disclaimer: c.disclaimer.clone(),
        introduction: c.introduction.clone(),
        recruitment: c.recruitment.clone(),
        demand: c.demand.clone(),
        money: c.money.clone(),
        red_flag_indicators: c.red_flag_indicators.clone(),
        information_requirements: c.information_requirements.clone(),
        headline_cards: c
            .headline_cards
            .iter()
            .map(|h| pb::HeadlineCard {
                pillar: pillar_to_pb(h.pillar).into(),
                headline: h.headline.clone(),
                detail: h.detail.clone(),
            })
            .collect(),
        citations: c
            .citations
            .iter()
            .map(|c| pb::Citation {
                id: c.id.clone(),
                section: c.section.clone(),
                claim: c.claim.clone(),
                source: Some(source_to_pb(&c.source)),
            })
            .collect(),
        uncertainty_flags: c
            .uncertainty_flags
            .iter()
            .map(|f| pb::UncertaintyFlag {
                section: f.section.clone(),
                field_path: f.field_path.clone(),
                confidence: confidence_to_pb(f.confidence).into(),
                reason: f.reason.clone(),
            })
            .collect(),
    }
}

/// The content of one section (as `GenerateReport` streams it) as proto:
/// [`content_to_pb`], except that only the title block section sends a
/// title block. Other sections leave it unset, which [`content_from_pb`]
/// reads as the empty title block it stands for.
pub fn section_content_to_pb(section: SectionKey, c: &Content) -> pb::ReportContent {
    let mut content = content_to_pb(c);
    if section != SectionKey::TitleBlock {
        content.title_block = None;
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_survives_the_round_trip() {
        let content = Content {
            title_block: TitleBlock {
                title: "LABOUR EXPLOITATION".into(),
                issue_number: 2,
                ..TitleBlock::default()
            },
            key_judgements: vec![KeyJudgement {
                letter: "A".into(),
                text: "We assess [c1].".into(),
                confidence: Confidence::Low,
            }],
            headline_cards: vec![HeadlineCard {
                pillar: Pillar::Money,
                headline: "h".into(),
                detail: "d".into(),
            }],
            citations: vec![Citation {
                id: "c1".into(),
                section: "key_judgements".into(),
                claim: "claim".into(),
                source: SourceRef {
                    source_id: "s1".into(),
                    label: "UNODC".into(),
                    url: String::new(),
                },
            }],
            uncertainty_flags: vec![UncertaintyFlag {
                section: "key_judgements".into(),
                field_path: "key_judgements[0].text".into(),
                confidence: Confidence::Low,
                reason: "thin".into(),
            }],
            ..Content::default()
        };
        assert_eq!(content_from_pb(content_to_pb(&content)), content);
    }

    #[test]
    fn only_the_title_block_section_sends_a_title_block() {
        let content = Content {
            title_block: TitleBlock {
                title: "LABOUR EXPLOITATION".into(),
                ..TitleBlock::default()
            },
            ..Content::default()
        };
        let title = section_content_to_pb(SectionKey::TitleBlock, &content);
        assert_eq!(title, content_to_pb(&content));
        let money = section_content_to_pb(SectionKey::Money, &Content::default());
        assert_eq!(money.title_block, None);
        assert_eq!(content_from_pb(money), Content::default());
    }
}
