//! The offline model's canned text, kept as data in
//! `services/agents/data/offline/` (built into the binary) and parsed once,
//! with the one-pass template filling the text uses.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::generator::Pillar;

/// The canned report text (`data/offline/report.json`).
const REPORT_JSON: &str = include_str!("../../../data/offline/report.json");
/// The canned chat answers (`data/offline/chat.json`).
const CHAT_JSON: &str = include_str!("../../../data/offline/chat.json");

/// The canned report text, parsed once.
pub(super) static REPORT: LazyLock<Report> = LazyLock::new(|| {
    serde_json::from_str(REPORT_JSON).unwrap_or_else(|e| panic!("data/offline/report.json: {e}"))
});

/// The canned chat answers, parsed once.
pub(super) static CHAT: LazyLock<Chat> = LazyLock::new(|| {
    serde_json::from_str(CHAT_JSON).unwrap_or_else(|e| panic!("data/offline/chat.json: {e}"))
});

/// Four sentences of a paragraph, without their final full stops.
pub(super) type Paragraph = [String; 4];

/// The text of every generated section (templates, see [`render`]).
#[derive(Debug, Deserialize)]
pub(super) struct Report {
    /// The title block.
    pub title_block: TitleBlock,
    /// Key judgements, in order.
    pub key_judgements: Vec<Judgement>,
    /// INTRODUCTION.
    pub introduction: Vec<Paragraph>,
    /// RECRUITMENT.
    pub recruitment: Vec<Paragraph>,
    /// DEMAND.
    pub demand: Vec<Paragraph>,
    /// MONEY.
    pub money: Vec<Paragraph>,
    /// RED FLAG INDICATORS.
    pub red_flag_indicators: Vec<String>,
    /// INFORMATION REQUIREMENTS.
    pub information_requirements: Vec<String>,
    /// One card per pillar.
    pub headline_cards: Vec<Card>,
    /// Phrases used when the scope leaves something open.
    pub wording: Wording,
}

/// The title block's text.
#[derive(Debug, Deserialize)]
pub(super) struct TitleBlock {
    /// The title, before capitalisation.
    pub title: String,
    /// The overview, with `{marker1}` and `{marker2}`.
    pub overview: String,
    /// The claims the two overview markers cite.
    pub overview_claims: [String; 2],
}

/// A key judgement.
#[derive(Debug, Deserialize)]
pub(super) struct Judgement {
    /// Its text, without the final full stop.
    pub text: String,
    /// `high`, `medium` or `low`.
    pub confidence: String,
}

/// A headline card.
#[derive(Debug, Deserialize)]
pub(super) struct Card {
    /// Its pillar.
    pub pillar: Pillar,
    /// The headline.
    pub headline: String,
    /// The supporting sentence, without the final full stop.
    pub detail: String,
}

/// Phrases for an open scope.
#[derive(Debug, Deserialize)]
pub(super) struct Wording {
    /// No country or region.
    pub any_place: String,
    /// No sector.
    pub any_sector: String,
    /// No (or a mixed) exploitation type.
    pub any_exploitation: String,
    /// One exploitation type, `{kind}`.
    pub exploitation_kind: String,
    /// A period from `{from}` to `{to}`.
    pub period_range: String,
    /// No period.
    pub any_period: String,
    /// The lead source, `{title}` and `{publisher}`.
    pub lead_source: String,
    /// No sources.
    pub no_sources: String,
}

/// The chat answers.
#[derive(Debug, Deserialize)]
pub(super) struct Chat {
    /// When the search found nothing.
    pub no_sources: String,
    /// When it found sources: `{count}` and `{labels}`.
    pub found_sources: String,
}

/// `template` with each `{name}` of `values` replaced by its value, in one
/// pass: inserted values are not read again, and braces around any other
/// text stay as written.
pub(super) fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let value = tail.find('}').and_then(|close| {
            let name = &tail[1..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| (*value, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(value);
                rest = &tail[close + 1..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_in_one_pass() {
        let values = [("sector", "{place}"), ("place", "GB")];
        assert_eq!(
            render("{sector} in {place}, {other} {", &values),
            "{place} in GB, {other} {"
        );
    }

    #[test]
    fn the_canned_text_parses() {
        assert_eq!(REPORT.key_judgements.len(), 7);
        assert_eq!(REPORT.headline_cards.len(), 3);
        assert!(CHAT.found_sources.contains("{labels}"));
    }
}
