//! The content of one report version, in report order, as stored (JSON,
//! fields in declared order) and as both services handle it. No protobuf
//! type appears here; [`crate::proto`] converts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::SectionKey;

/// The fixed disclaimer every report carries; edits to it are refused.
pub const DISCLAIMER: &str = "This report is an intelligence assessment produced from open sources and \
the organisation's own data. It states judgements, not facts, and carries the confidence shown for each \
judgement. It does not identify any individual and must not be used as the sole basis for action against \
any person or business. Recipients should corroborate it against their own information before acting.";

/// How confident a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Not rated.
    #[default]
    Unspecified,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Confidence {
    /// The lowercase name (`high`), empty when unrated.
    pub const fn as_str(self) -> &'static str {
        match self {
            Confidence::Unspecified => "",
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }

    /// The confidence [`Confidence::as_str`] names `raw`; unrated for any
    /// other text.
    pub fn from_name(raw: &str) -> Confidence {
        [Confidence::Low, Confidence::Medium, Confidence::High]
            .into_iter()
            .find(|c| c.as_str() == raw)
            .unwrap_or_default()
    }
}

/// The pillar of a headline card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pillar {
    /// Not set.
    #[default]
    Unspecified,
    /// Recruitment.
    Recruitment,
    /// Demand.
    Demand,
    /// Money.
    Money,
}

/// The title block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TitleBlock {
    /// In capitals.
    pub title: String,
    /// As printed.
    pub country_region: String,
    /// As printed.
    pub sector_theme: String,
    /// Date of issue.
    pub issued_at: Option<DateTime<Utc>>,
    /// From 1.
    pub issue_number: i32,
    /// 3–5 sentences.
    pub overview: String,
}

/// One lettered key judgement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyJudgement {
    /// `A`, `B`, …
    pub letter: String,
    /// The judgement with `[id]` markers.
    pub text: String,
    /// Its confidence.
    pub confidence: Confidence,
}

/// A headline card.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadlineCard {
    /// Its pillar.
    pub pillar: Pillar,
    /// A quantified headline.
    pub headline: String,
    /// One or two sentences.
    pub detail: String,
}

/// A source as cited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The source's UUID in documents.
    pub source_id: String,
    /// As printed.
    pub label: String,
    /// Empty for internal datasets.
    pub url: String,
}

/// The label of a URL source, e.g. `UNODC, Global Report (2024)`.
pub fn url_label(publisher: &str, title: &str, year: Option<i32>) -> String {
    match year {
        Some(year) => format!("{publisher}, {title} ({year})"),
        None => format!("{publisher}, {title}"),
    }
}

/// The label of an internal dataset: `[Internal: {dataset}, {date range}]`.
pub fn dataset_label(
    dataset: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> String {
    let day = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "open".to_owned())
    };
    format!("[Internal: {dataset}, {} to {}]", day(from), day(to))
}

/// A claim and its source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// Unique in the version; cited as `[id]`.
    pub id: String,
    /// The section holding the claim.
    pub section: String,
    /// The claim.
    pub claim: String,
    /// The source.
    pub source: SourceRef,
}

/// A low-confidence statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UncertaintyFlag {
    /// The section holding it.
    pub section: String,
    /// The field, e.g. `key_judgements[2].text`.
    pub field_path: String,
    /// Its confidence.
    pub confidence: Confidence,
    /// Why.
    pub reason: String,
}

/// The content of one version, in report order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// Title block.
    pub title_block: TitleBlock,
    /// Key judgements.
    pub key_judgements: Vec<KeyJudgement>,
    /// The fixed disclaimer.
    pub disclaimer: String,
    /// Markdown.
    pub introduction: String,
    /// Markdown.
    pub recruitment: String,
    /// Markdown.
    pub demand: String,
    /// Markdown.
    pub money: String,
    /// 5–10 indicators.
    pub red_flag_indicators: Vec<String>,
    /// Numbered questions.
    pub information_requirements: Vec<String>,
    /// Three cards.
    pub headline_cards: Vec<HeadlineCard>,
    /// Every claim and its source.
    pub citations: Vec<Citation>,
    /// Low-confidence statements.
    pub uncertainty_flags: Vec<UncertaintyFlag>,
}

impl Content {
    /// SHA-256 of the canonical JSON (fields in declared order), 64
    /// lowercase hex characters.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Copies `section` (its field, citations and uncertainty flags) from
    /// `from`, replacing what this content had.
    pub fn replace_section(&mut self, section: SectionKey, from: &Content) {
        let key = section.as_str();
        match section {
            SectionKey::TitleBlock => self.title_block = from.title_block.clone(),
            SectionKey::KeyJudgements => self.key_judgements = from.key_judgements.clone(),
            SectionKey::Disclaimer => self.disclaimer = from.disclaimer.clone(),
            SectionKey::Introduction => self.introduction = from.introduction.clone(),
            SectionKey::Recruitment => self.recruitment = from.recruitment.clone(),
            SectionKey::Demand => self.demand = from.demand.clone(),
            SectionKey::Money => self.money = from.money.clone(),
            SectionKey::RedFlagIndicators => {
                self.red_flag_indicators = from.red_flag_indicators.clone()
            }
            SectionKey::InformationRequirements => {
                self.information_requirements = from.information_requirements.clone()
            }
            SectionKey::HeadlineCards => self.headline_cards = from.headline_cards.clone(),
        }
        self.citations.retain(|c| c.section != key);
        self.citations
            .extend(from.citations.iter().filter(|c| c.section == key).cloned());
        self.uncertainty_flags.retain(|f| f.section != key);
        self.uncertainty_flags.extend(
            from.uncertainty_flags
                .iter()
                .filter(|f| f.section == key)
                .cloned(),
        );
    }

    /// Empties `section` with its citations and flags.
    pub fn clear_section(&mut self, section: SectionKey) {
        self.replace_section(section, &Content::default());
    }

    /// Whether `section` has no content at all.
    pub fn section_is_empty(&self, section: SectionKey) -> bool {
        match section {
            SectionKey::TitleBlock => {
                self.title_block.title.trim().is_empty()
                    && self.title_block.overview.trim().is_empty()
            }
            SectionKey::KeyJudgements => self.key_judgements.is_empty(),
            SectionKey::Disclaimer => self.disclaimer.trim().is_empty(),
            SectionKey::Introduction => self.introduction.trim().is_empty(),
            SectionKey::Recruitment => self.recruitment.trim().is_empty(),
            SectionKey::Demand => self.demand.trim().is_empty(),
            SectionKey::Money => self.money.trim().is_empty(),
            SectionKey::RedFlagIndicators => self.red_flag_indicators.is_empty(),
            SectionKey::InformationRequirements => self.information_requirements.is_empty(),
            SectionKey::HeadlineCards => self.headline_cards.is_empty(),
        }
    }

    /// The free-text fields of `section` (with its citation claims and
    /// flag reasons), as `(field_path, text)`, mutable for redaction.
    pub fn text_fields_mut(&mut self, section: SectionKey) -> Vec<(String, &mut String)> {
        let key = section.as_str();
        let mut fields: Vec<(String, &mut String)> = Vec::new();
        match section {
            SectionKey::TitleBlock => {
                let t = &mut self.title_block;
                fields.push(("title_block.title".into(), &mut t.title));
                fields.push(("title_block.country_region".into(), &mut t.country_region));
                fields.push(("title_block.sector_theme".into(), &mut t.sector_theme));
                fields.push(("title_block.overview".into(), &mut t.overview));
            }
            SectionKey::KeyJudgements => {
                for (i, kj) in self.key_judgements.iter_mut().enumerate() {
                    fields.push((format!("key_judgements[{i}].text"), &mut kj.text));
                }
            }
            SectionKey::Disclaimer => fields.push(("disclaimer".into(), &mut self.disclaimer)),
            SectionKey::Introduction => {
                fields.push(("introduction".into(), &mut self.introduction))
            }
            SectionKey::Recruitment => fields.push(("recruitment".into(), &mut self.recruitment)),
            SectionKey::Demand => fields.push(("demand".into(), &mut self.demand)),
            SectionKey::Money => fields.push(("money".into(), &mut self.money)),
            SectionKey::RedFlagIndicators => {
                for (i, item) in self.red_flag_indicators.iter_mut().enumerate() {
                    fields.push((format!("red_flag_indicators[{i}]"), item));
                }
            }
            SectionKey::InformationRequirements => {
                for (i, item) in self.information_requirements.iter_mut().enumerate() {
                    fields.push((format!("information_requirements[{i}]"), item));
                }
            }
            SectionKey::HeadlineCards => {
                for (i, card) in self.headline_cards.iter_mut().enumerate() {
                    fields.push((format!("headline_cards[{i}].headline"), &mut card.headline));
                    fields.push((format!("headline_cards[{i}].detail"), &mut card.detail));
                }
            }
        }
        for (i, citation) in self.citations.iter_mut().enumerate() {
            if citation.section == key {
                fields.push((format!("citations[{i}].claim"), &mut citation.claim));
            }
        }
        for (i, flag) in self.uncertainty_flags.iter_mut().enumerate() {
            if flag.section == key {
                fields.push((format!("uncertainty_flags[{i}].reason"), &mut flag.reason));
            }
        }
        fields
    }

    /// `section` rendered as markdown (for diffs and exports).
    pub fn section_markdown(&self, section: SectionKey) -> String {
        let mut out = String::new();
        match section {
            SectionKey::TitleBlock => {
                let t = &self.title_block;
                out.push_str(&format!("# {}\n\n", t.title));
                out.push_str(&format!(
                    "{} | {} | Issue {}{}\n\n",
                    t.country_region,
                    t.sector_theme,
                    t.issue_number,
                    t.issued_at
                        .map(|d| format!(" | {}", d.format("%d %B %Y")))
                        .unwrap_or_default()
                ));
                out.push_str(&t.overview);
                out.push('\n');
            }
            SectionKey::KeyJudgements => {
                out.push_str("We assess as follows:\n\n");
                for kj in &self.key_judgements {
                    let confidence = match kj.confidence {
                        Confidence::Unspecified => String::new(),
                        c => format!(" ({} confidence)", c.as_str()),
                    };
                    out.push_str(&format!("{}. {}{}\n", kj.letter, kj.text, confidence));
                }
            }
            SectionKey::Disclaimer => {
                out.push_str(&self.disclaimer);
                out.push('\n');
            }
            SectionKey::Introduction => push_text(&mut out, &self.introduction),
            SectionKey::Recruitment => push_text(&mut out, &self.recruitment),
            SectionKey::Demand => push_text(&mut out, &self.demand),
            SectionKey::Money => push_text(&mut out, &self.money),
            SectionKey::RedFlagIndicators => {
                for item in &self.red_flag_indicators {
                    out.push_str(&format!("- {item}\n"));
                }
            }
            SectionKey::InformationRequirements => {
                for (i, item) in self.information_requirements.iter().enumerate() {
                    out.push_str(&format!("{}. {item}\n", i + 1));
                }
            }
            SectionKey::HeadlineCards => {
                for card in &self.headline_cards {
                    let pillar = match card.pillar {
                        Pillar::Recruitment => "Recruitment",
                        Pillar::Demand => "Demand",
                        Pillar::Money => "Money",
                        Pillar::Unspecified => "Pillar",
                    };
                    out.push_str(&format!(
                        "**{pillar}: {}** {}\n\n",
                        card.headline, card.detail
                    ));
                }
            }
        }
        let key = section.as_str();
        let citations: Vec<&Citation> =
            self.citations.iter().filter(|c| c.section == key).collect();
        if !citations.is_empty() {
            out.push('\n');
            for c in citations {
                let url = if c.source.url.is_empty() {
                    String::new()
                } else {
                    format!(" <{}>", c.source.url)
                };
                out.push_str(&format!("[{}] {}{}\n", c.id, c.source.label, url));
            }
        }
        out
    }
}

fn push_text(out: &mut String, text: &str) {
    out.push_str(text.trim_end());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_names_round_trip() {
        for c in [Confidence::Low, Confidence::Medium, Confidence::High] {
            assert_eq!(Confidence::from_name(c.as_str()), c);
        }
        assert_eq!(Confidence::from_name(""), Confidence::Unspecified);
        assert_eq!(Confidence::from_name("certain"), Confidence::Unspecified);
    }
}
