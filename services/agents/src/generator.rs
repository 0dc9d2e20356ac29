//! The KJ report generator: one model call per section, in report order.
//!
//! Each section is asked for as a small JSON object (the shape is in the
//! prompt); the answer is parsed, its citation ids are renumbered so they
//! are unique in the version (`c1`, `c2`… continuing after those of the
//! current draft), markers that do not resolve to a cited source of the
//! section are removed, personal data is redacted, low-confidence
//! judgements get uncertainty flags and the title is put in capitals.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
/// The KJ contract (keys, confidence, pillars, title block, judgements,
/// cards, sources) shared with reports.
pub use treven_kj::{
    Confidence, HeadlineCard, KeyJudgement as Judgement, Pillar, SectionKey, SourceRef, TitleBlock,
    dataset_label, url_label,
};

/// What a report is about, as the generator needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeBrief {
    /// ISO country code, or empty.
    pub country: String,
    /// A region, or empty.
    pub region: String,
    /// Sector or theme.
    pub sector: String,
    /// The exploitation type, lowercase (`labour`), or empty.
    pub exploitation: String,
    /// Start of the period.
    pub from: Option<DateTime<Utc>>,
    /// End of the period.
    pub to: Option<DateTime<Utc>>,
    /// `fi`, `ngo`, `le` or empty.
    pub client_type: String,
}

/// A source the generator may cite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceBrief {
    /// The source's UUID in the documents service.
    pub id: String,
    /// The citation as printed.
    pub label: String,
    /// The URL; empty for internal datasets.
    pub url: String,
    /// The title.
    pub title: String,
    /// The publisher.
    pub publisher: String,
    /// A short summary.
    pub summary: String,
    /// The trust score, 0–100.
    pub trust: i32,
}

/// One section to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionTask {
    /// Which section.
    pub section: SectionKey,
    /// The report's scope.
    pub scope: ScopeBrief,
    /// Sources to cite.
    pub sources: Vec<SourceBrief>,
    /// Extra instructions from the analyst.
    pub instructions: String,
}

/// A citation of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CitationDraft {
    /// Unique in the version (`c7`).
    pub id: String,
    /// The section holding the marker.
    pub section: SectionKey,
    /// The claim.
    pub claim: String,
    /// The source.
    pub source: SourceRef,
}

/// A low-confidence statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// The section.
    pub section: SectionKey,
    /// The field, e.g. `key_judgements[2].text`.
    pub field_path: String,
    /// Its confidence.
    pub confidence: Confidence,
    /// Why.
    pub reason: String,
}

/// A section's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionBody {
    /// The title block.
    TitleBlock(TitleBlock),
    /// Key judgements.
    KeyJudgements(Vec<Judgement>),
    /// Introduction, recruitment, demand or money (markdown).
    Text(String),
    /// Red flags or information requirements.
    List(Vec<String>),
    /// Headline cards.
    Cards(Vec<HeadlineCard>),
}

/// A written section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedSection {
    /// Which section.
    pub section: SectionKey,
    /// Its content.
    pub body: SectionBody,
    /// Citations whose markers are in it.
    pub citations: Vec<CitationDraft>,
    /// Its uncertainty flags.
    pub flags: Vec<Flag>,
}

impl GeneratedSection {
    /// The section as KJ content holding only it (with its citations and
    /// flags); `treven_kj::content_to_pb` makes it a `ReportContent`.
    pub fn into_content(self) -> treven_kj::Content {
        let key = self.section;
        let mut content = treven_kj::Content {
            citations: (self.citations.into_iter())
                .map(|c| treven_kj::Citation {
                    id: c.id,
                    section: c.section.as_str().to_owned(),
                    claim: c.claim,
                    source: c.source,
                })
                .collect(),
            uncertainty_flags: (self.flags.into_iter())
                .map(|f| treven_kj::UncertaintyFlag {
                    section: f.section.as_str().to_owned(),
                    field_path: f.field_path,
                    confidence: f.confidence,
                    reason: f.reason,
                })
                .collect(),
            ..Default::default()
        };
        match self.body {
            SectionBody::TitleBlock(title_block) => content.title_block = title_block,
            SectionBody::KeyJudgements(items) => content.key_judgements = items,
            SectionBody::Text(text) => match key {
                SectionKey::Introduction => content.introduction = text,
                SectionKey::Recruitment => content.recruitment = text,
                SectionKey::Demand => content.demand = text,
                _ => content.money = text,
            },
            SectionBody::List(items) => match key {
                SectionKey::RedFlagIndicators => content.red_flag_indicators = items,
                _ => content.information_requirements = items,
            },
            SectionBody::Cards(cards) => content.headline_cards = cards,
        }
        content
    }
}

/// The JSON a model answers with for one section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SectionJson {
    /// Title block: the title.
    pub title: Option<String>,
    /// Title block: country or region.
    pub country_region: Option<String>,
    /// Title block: sector or theme.
    pub sector_theme: Option<String>,
    /// Title block: the overview.
    pub overview: Option<String>,
    /// Text sections.
    pub text: Option<String>,
    /// Lists; key judgements are objects `{text, confidence}`.
    pub items: Vec<Value>,
    /// Headline cards.
    pub cards: Vec<HeadlineCard>,
    /// Citations `{id, source_id, claim}`.
    pub citations: Vec<CitationJson>,
}

/// A citation as a model writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CitationJson {
    /// The marker id used in the text.
    pub id: String,
    /// The source's id, from the list given.
    pub source_id: String,
    /// The claim.
    pub claim: String,
}

const SYSTEM_PROMPT: &str = "You are the report generator of Treven, an intelligence platform on human trafficking and modern slavery. \
You write one section of a Key Judgements (KJ) report at a time, in British English, for the client type given. \
Every factual claim cites a source from the list given, with a marker [cN] in the text whose id appears in `citations` with the source_id. \
Every paragraph (blank-line separated), every key judgement and every headline card detail carries at least one marker. \
Never include personal data: no names of individuals, contact details, identity numbers, dates of birth or addresses. \
Answer with one JSON object and nothing else.";

/// The system prompt of the generator.
pub fn system_prompt() -> &'static str {
    SYSTEM_PROMPT
}

fn shape_of(section: SectionKey) -> &'static str {
    match section {
        SectionKey::TitleBlock => {
            "{\"title\": \"IN CAPITALS\", \"country_region\": \"...\", \"sector_theme\": \"...\", \"overview\": \"3-5 sentences with [c1] markers\", \"citations\": [{\"id\": \"c1\", \"source_id\": \"...\", \"claim\": \"...\"}]}"
        }
        SectionKey::KeyJudgements => {
            "{\"items\": [{\"text\": \"We assess ... [c1]\", \"confidence\": \"high|medium|low\"}], \"citations\": [...]} with 5 to 10 items"
        }
        SectionKey::RedFlagIndicators => {
            "{\"items\": [\"indicator for financial institutions\"], \"citations\": []} with 5 to 10 items"
        }
        SectionKey::InformationRequirements => {
            "{\"items\": [\"open question\"], \"citations\": []} with 4 to 8 items"
        }
        SectionKey::HeadlineCards => {
            "{\"cards\": [{\"pillar\": \"recruitment|demand|money\", \"headline\": \"quantified\", \"detail\": \"one or two sentences [c1]\"}], \"citations\": [...]} with exactly one card per pillar"
        }
        _ => {
            "{\"text\": \"markdown paragraphs separated by blank lines, each with [cN] markers\", \"citations\": [...]}"
        }
    }
}

/// The user prompt for `task`.
pub fn user_prompt(task: &SectionTask) -> String {
    let sources: Vec<Value> = task
        .sources
        .iter()
        .map(|s| {
            serde_json::json!({
                "source_id": s.id, "label": s.label, "title": s.title,
                "publisher": s.publisher, "summary": s.summary, "trust": s.trust,
            })
        })
        .collect();
    format!(
        "Write the `{}` section.\nScope: {}\nSources: {}\nAnswer shape: {}\nInstructions from the analyst (may be empty):\n---\n{}",
        task.section.as_str(),
        serde_json::to_string(&task.scope).unwrap_or_default(),
        Value::Array(sources),
        shape_of(task.section),
        task.instructions
    )
}

/// The JSON object in a model's answer (fences and chatter around it are
/// ignored); a card must name one of the three pillars.
fn json_in(raw: &str) -> Option<SectionJson> {
    let start = raw.find('{')?;
    let end = raw.rfind('}')?;
    let json: SectionJson = serde_json::from_str(raw.get(start..=end)?).ok()?;
    let pillars_named = (json.cards.iter()).all(|card| card.pillar != Pillar::Unspecified);
    pillars_named.then_some(json)
}

/// Hands out citation ids unique in a version.
#[derive(Debug, Clone, Default)]
pub struct CitationIds {
    next: u32,
}

impl CitationIds {
    /// Starts after the highest `cN` among `existing`.
    pub fn after<'a>(existing: impl IntoIterator<Item = &'a str>) -> Self {
        let max = existing
            .into_iter()
            .filter_map(|id| id.strip_prefix('c').and_then(|n| n.parse::<u32>().ok()))
            .max()
            .unwrap_or(0);
        Self { next: max + 1 }
    }

    fn take(&mut self) -> String {
        let id = format!("c{}", self.next);
        self.next += 1;
        id
    }
}

/// Whether `[inner]` is a citation marker a model may write (`c1`, `s12`,
/// `src-3`): short, a letter first, letters, digits, `-` or `_`, and a
/// digit. Labels such as `[Internal: …]` or `[EMAIL]` are not.
fn looks_like_marker(inner: &str) -> bool {
    (2..=12).contains(&inner.len())
        && inner.starts_with(|c: char| c.is_ascii_lowercase())
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && inner.chars().any(|c| c.is_ascii_digit())
}

/// Rewrites `[old]` markers per `map`; markers not in `map` are removed
/// (with the space before them).
pub fn rewrite_markers(text: &str, map: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after.find(']') else {
            out.push_str(after);
            return out;
        };
        let inner = &after[1..close];
        let is_marker = map.contains_key(inner) || looks_like_marker(inner);
        if is_marker {
            if let Some(new) = map.get(inner) {
                out.push('[');
                out.push_str(new);
                out.push(']');
            } else {
                while out.ends_with(' ') {
                    out.pop();
                }
            }
        } else {
            out.push_str(&after[..=close]);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn redact(text: &str) -> String {
    match treven_pii::detect(text) {
        Ok(findings) if !findings.is_empty() => {
            treven_pii::redact(text, &findings).unwrap_or_else(|_| text.to_owned())
        }
        _ => text.to_owned(),
    }
}

/// Parses a model's answer for `task` into a section; `ids` gives the
/// version-unique citation ids; `issue_number` and `now` fill the title
/// block.
pub fn parse_section(
    task: &SectionTask,
    raw: &str,
    ids: &mut CitationIds,
    issue_number: i32,
    now: DateTime<Utc>,
) -> Result<GeneratedSection, String> {
    let json =
        json_in(raw).ok_or_else(|| "the model did not answer with a JSON object".to_owned())?;
    let section = task.section;
    let sources: HashMap<&str, &SourceBrief> =
        task.sources.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut map = HashMap::new();
    let mut citations = Vec::new();
    for citation in &json.citations {
        let Some(source) = sources.get(citation.source_id.as_str()) else {
            continue;
        };
        if map.contains_key(&citation.id) {
            continue;
        }
        let id = ids.take();
        map.insert(citation.id.clone(), id.clone());
        citations.push(CitationDraft {
            id,
            section,
            claim: redact(&rewrite_markers(&citation.claim, &HashMap::new())),
            source: SourceRef {
                source_id: source.id.clone(),
                label: source.label.clone(),
                url: source.url.clone(),
            },
        });
    }
    let clean = |text: &str| redact(rewrite_markers(text, &map).trim());
    let mut flags = Vec::new();
    let body = match section {
        SectionKey::TitleBlock => {
            let title = clean(json.title.as_deref().unwrap_or_default()).to_uppercase();
            let overview = clean(json.overview.as_deref().unwrap_or_default());
            if title.is_empty() || overview.is_empty() {
                return Err("the title block needs a title and an overview".to_owned());
            }
            SectionBody::TitleBlock(TitleBlock {
                title,
                country_region: clean(json.country_region.as_deref().unwrap_or_default()),
                sector_theme: clean(json.sector_theme.as_deref().unwrap_or_default()),
                issued_at: Some(now),
                issue_number,
                overview,
            })
        }
        SectionKey::KeyJudgements => {
            let mut items = Vec::new();
            for (index, item) in json.items.iter().enumerate().take(10) {
                let (text, confidence) = match item {
                    Value::String(text) => (text.as_str(), Confidence::Medium),
                    other => (
                        other["text"].as_str().unwrap_or_default(),
                        serde_json::from_value(other["confidence"].clone())
                            .unwrap_or(Confidence::Medium),
                    ),
                };
                let text = clean(text);
                if text.is_empty() {
                    continue;
                }
                let letter = char::from(b'A' + u8::try_from(items.len()).unwrap_or(0)).to_string();
                if confidence == Confidence::Low {
                    flags.push(Flag {
                        section,
                        field_path: format!("key_judgements[{index}].text"),
                        confidence,
                        reason: "the judgement rests on limited or uncorroborated reporting"
                            .to_owned(),
                    });
                }
                items.push(Judgement {
                    letter,
                    text,
                    confidence,
                });
            }
            SectionBody::KeyJudgements(items)
        }
        SectionKey::RedFlagIndicators | SectionKey::InformationRequirements => SectionBody::List(
            json.items
                .iter()
                .filter_map(Value::as_str)
                .map(clean)
                .filter(|s| !s.is_empty())
                .take(10)
                .collect(),
        ),
        SectionKey::HeadlineCards => SectionBody::Cards(
            json.cards
                .iter()
                .map(|card| HeadlineCard {
                    pillar: card.pillar,
                    headline: clean(&card.headline),
                    detail: clean(&card.detail),
                })
                .collect(),
        ),
        SectionKey::Disclaimer => {
            return Err("the generator does not write the disclaimer".to_owned());
        }
        SectionKey::Introduction
        | SectionKey::Recruitment
        | SectionKey::Demand
        | SectionKey::Money => {
            let text = clean(json.text.as_deref().unwrap_or_default());
            if text.is_empty() {
                return Err(format!("the {} section is empty", section.as_str()));
            }
            SectionBody::Text(text)
        }
    };
    // Keep only citations whose marker survived in the section.
    let all_text = serde_json::to_string(&body).unwrap_or_default();
    citations.retain(|c| all_text.contains(&format!("[{}]", c.id)));
    if citations.is_empty()
        && !task.sources.is_empty()
        && section != SectionKey::RedFlagIndicators
        && section != SectionKey::InformationRequirements
    {
        flags.push(Flag {
            section,
            field_path: section.as_str().to_owned(),
            confidence: Confidence::Low,
            reason: "no claim of this section cites a source".to_owned(),
        });
    }
    Ok(GeneratedSection {
        section,
        body,
        citations,
        flags,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn markers_are_renumbered_and_unknown_ones_removed() {
        let map = HashMap::from([("c1".to_owned(), "c7".to_owned())]);
        assert_eq!(
            rewrite_markers("A claim [c1]. Another [c9]. [Internal: x] stays.", &map),
            "A claim [c7]. Another. [Internal: x] stays."
        );
        let ids = CitationIds::after(["c3", "c12", "x"]);
        assert_eq!(ids.next, 13);
    }

    #[test]
    fn a_section_answer_is_parsed_with_version_unique_ids() {
        let task = SectionTask {
            section: SectionKey::KeyJudgements,
            scope: ScopeBrief::default(),
            sources: vec![SourceBrief {
                id: "s1".into(),
                label: "UNODC, Report (2024)".into(),
                url: "https://example.org".into(),
                title: "Report".into(),
                publisher: "UNODC".into(),
                summary: String::new(),
                trust: 80,
            }],
            instructions: String::new(),
        };
        let raw = r#"```json
{"items": [{"text": "We assess one [c1].", "confidence": "high"}, {"text": "Two [c2].", "confidence": "low"}],
 "citations": [{"id": "c1", "source_id": "s1", "claim": "one"}, {"id": "c2", "source_id": "nope", "claim": "two"}]}
```"#;
        let mut ids = CitationIds::after(["c4"]);
        let section = parse_section(&task, raw, &mut ids, 1, Utc::now()).unwrap();
        let SectionBody::KeyJudgements(items) = &section.body else {
            panic!("judgements")
        };
        assert_eq!(items[0].text, "We assess one [c5].");
        assert_eq!(items[1].text, "Two.");
        assert_eq!(items[1].letter, "B");
        assert_eq!(section.citations.len(), 1);
        assert_eq!(section.citations[0].id, "c5");
        assert_eq!(section.flags[0].field_path, "key_judgements[1].text");
        assert!(parse_section(&task, "no json", &mut ids, 1, Utc::now()).is_err());
    }
}
