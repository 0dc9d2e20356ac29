//! The offline provider: deterministic, no network. It writes a well-formed
//! KJ report section from the sources of a generator task, and answers chat
//! by searching sources once and summarising what it found, so the whole
//! product works without a model account. Usage is estimated at four
//! characters per token and costs nothing. The text itself is data, in
//! `services/agents/data/offline/` (`offline/canned.rs`).

use serde_json::{Value, json};

use super::{Block, EventStream, ModelEvent, ModelRequest, Provider, Role, StopReason, Usage};
use crate::generator::{ScopeBrief, SectionKey, SectionTask, SourceBrief};

mod canned;

use canned::{CHAT, Paragraph, REPORT, render};

/// The model id the offline provider reports.
pub const OFFLINE_MODEL: &str = "offline-kj-1";

/// The offline provider.
#[derive(Debug, Clone, Default)]
pub struct OfflineProvider {
    latency: std::time::Duration,
}

impl OfflineProvider {
    /// An offline provider that waits `latency` before the first event of
    /// every call, like a real model's time to first token (zero: answers at
    /// once). Lets the dev stack show generation progress and lets drills
    /// stop a worker while a generation is under way.
    pub fn with_latency(latency: std::time::Duration) -> Self {
        Self { latency }
    }
}

fn tokens(chars: usize) -> i64 {
    i64::try_from(chars.div_ceil(4)).unwrap_or(i64::MAX)
}

/// Splits `text` into deltas of about eight words.
fn deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        current.push_str(word);
        if i % 8 == 7 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl Provider for OfflineProvider {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn model_id(&self) -> &str {
        OFFLINE_MODEL
    }

    fn stream(&self, request: ModelRequest) -> EventStream {
        let prompt = request.prompt_chars();
        let mut events = Vec::new();
        let output;
        let stop = match &request.task {
            Some(task) => {
                let text = section_json(task).to_string();
                output = text.len();
                events.extend(deltas(&text).into_iter().map(ModelEvent::Text));
                StopReason::EndTurn
            }
            None => match chat_step(&request) {
                ChatStep::Call { name, input } => {
                    output = input.to_string().len();
                    events.push(ModelEvent::ToolUse {
                        id: "offline-call-1".to_owned(),
                        name,
                        input,
                    });
                    StopReason::ToolUse
                }
                ChatStep::Answer(text) => {
                    output = text.len();
                    events.extend(deltas(&text).into_iter().map(ModelEvent::Text));
                    StopReason::EndTurn
                }
            },
        };
        events.push(ModelEvent::Usage(Usage {
            input_tokens: tokens(prompt),
            output_tokens: tokens(output),
            ..Usage::default()
        }));
        events.push(ModelEvent::Stop(stop));
        let events = futures::stream::iter(events.into_iter().map(Ok));
        if self.latency.is_zero() {
            return Box::pin(events);
        }
        let latency = self.latency;
        Box::pin(futures::StreamExt::flatten(futures::stream::once(
            async move {
                tokio::time::sleep(latency).await;
                events
            },
        )))
    }
}

enum ChatStep {
    Call { name: String, input: Value },
    Answer(String),
}

/// The text after the last `---` line of the last user text (the input of
/// an agent prompt), or all of it.
fn last_user_text(request: &ModelRequest) -> String {
    let text = request
        .turns
        .iter()
        .rev()
        .filter(|t| t.role == Role::User)
        .flat_map(|t| &t.blocks)
        .find_map(|b| match b {
            Block::Text(text) => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_default();
    match text.rfind("\n---\n") {
        Some(at) => text[at + 5..].trim().to_owned(),
        None => text.trim().to_owned(),
    }
}

fn first_sentences(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for sentence in text.split_inclusive(['.', '!', '?']) {
        if out.chars().count() + sentence.chars().count() > max_chars && !out.is_empty() {
            break;
        }
        out.push_str(sentence);
    }
    out.chars()
        .take(max_chars)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn chat_step(request: &ModelRequest) -> ChatStep {
    let results: Vec<&Value> = request
        .turns
        .iter()
        .flat_map(|t| &t.blocks)
        .filter_map(|b| match b {
            Block::ToolResult { content, .. } => Some(content),
            _ => None,
        })
        .collect();
    let question = last_user_text(request);
    let can_search = request.tools.iter().any(|t| t.name == "search_sources");
    if can_search && results.is_empty() {
        let words: Vec<&str> = question.split_whitespace().take(6).collect();
        return ChatStep::Call {
            name: "search_sources".to_owned(),
            input: json!({ "text": words.join(" ") }),
        };
    }
    if !can_search && request.tools.is_empty() && results.is_empty() {
        // Summaries and social posts: the first sentences of the input.
        return ChatStep::Answer(first_sentences(&question, 280));
    }
    let sources: Vec<String> = results
        .iter()
        .filter_map(|r| r["sources"].as_array())
        .flatten()
        .filter_map(|s| s["label"].as_str().map(str::to_owned))
        .take(5)
        .collect();
    let answer = if sources.is_empty() {
        CHAT.no_sources.clone()
    } else {
        render(
            &CHAT.found_sources,
            &[
                ("count", &sources.len().to_string()),
                ("labels", &sources.join("; ")),
            ],
        )
    };
    ChatStep::Answer(answer)
}

fn place(scope: &ScopeBrief) -> String {
    if !scope.region.is_empty() {
        scope.region.clone()
    } else if !scope.country.is_empty() {
        scope.country.clone()
    } else {
        REPORT.wording.any_place.clone()
    }
}

fn sector(scope: &ScopeBrief) -> String {
    if scope.sector.is_empty() {
        REPORT.wording.any_sector.clone()
    } else {
        scope.sector.clone()
    }
}

fn exploitation(scope: &ScopeBrief) -> String {
    match scope.exploitation.as_str() {
        "" | "mixed" | "other" => REPORT.wording.any_exploitation.clone(),
        kind => render(&REPORT.wording.exploitation_kind, &[("kind", kind)]),
    }
}

fn period(scope: &ScopeBrief) -> String {
    match (scope.from, scope.to) {
        (Some(from), Some(to)) => render(
            &REPORT.wording.period_range,
            &[
                ("from", &from.format("%B %Y").to_string()),
                ("to", &to.format("%B %Y").to_string()),
            ],
        ),
        _ => REPORT.wording.any_period.clone(),
    }
}

/// Cites sources in rotation: each call gives the next marker and records
/// the citation.
struct Cites<'a> {
    sources: &'a [SourceBrief],
    next: usize,
    citations: Vec<Value>,
}

impl Cites<'_> {
    fn mark(&mut self, claim: &str) -> String {
        let Some(source) = self.sources.get(self.next % self.sources.len().max(1)) else {
            return String::new();
        };
        self.next += 1;
        let id = format!("c{}", self.next);
        self.citations
            .push(json!({ "id": id, "source_id": source.id, "claim": claim }));
        format!(" [{id}]")
    }
}

/// Paragraphs of four sentences, the first cited, joined by blank lines.
fn paragraphs(cites: &mut Cites<'_>, paragraphs: &[Paragraph], values: &[(&str, &str)]) -> String {
    paragraphs
        .iter()
        .map(|sentences| {
            let [first, second, third, fourth] = sentences.each_ref().map(|s| render(s, values));
            let marker = cites.mark(&first);
            format!("{first}{marker}. {second}. {third}. {fourth}.")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The deterministic answer of the offline provider to a section task, in
/// the JSON shape of [`crate::generator::SectionJson`].
pub fn section_json(task: &SectionTask) -> Value {
    let scope = &task.scope;
    let report = &*REPORT;
    let (p, s, e, t) = (
        place(scope),
        sector(scope),
        exploitation(scope),
        period(scope),
    );
    let lead = task
        .sources
        .first()
        .map(|src| {
            render(
                &report.wording.lead_source,
                &[("title", &src.title), ("publisher", &src.publisher)],
            )
        })
        .unwrap_or_else(|| report.wording.no_sources.clone());
    let n = task.sources.len().to_string();
    let values = [
        ("exploitation", e.as_str()),
        ("sector", s.as_str()),
        ("place", p.as_str()),
        ("period", t.as_str()),
        ("source_count", n.as_str()),
        ("lead_source", lead.as_str()),
    ];
    let fill = |template: &String| render(template, &values);
    let mut cites = Cites {
        sources: &task.sources,
        next: 0,
        citations: Vec::new(),
    };
    let body = match task.section {
        SectionKey::TitleBlock => {
            let title = &report.title_block;
            let m1 = cites.mark(&title.overview_claims[0]);
            let m2 = cites.mark(&title.overview_claims[1]);
            let mut overview_values = values.to_vec();
            overview_values.extend([("marker1", m1.as_str()), ("marker2", m2.as_str())]);
            json!({
                "title": fill(&title.title).to_uppercase(),
                "country_region": p,
                "sector_theme": s,
                "overview": render(&title.overview, &overview_values),
            })
        }
        SectionKey::KeyJudgements => {
            let items: Vec<Value> = report
                .key_judgements
                .iter()
                .map(|judgement| {
                    let text = fill(&judgement.text);
                    let marker = cites.mark(&text);
                    json!({ "text": format!("{text}{marker}."), "confidence": judgement.confidence })
                })
                .collect();
            json!({ "items": items })
        }
        SectionKey::Introduction => {
            json!({ "text": paragraphs(&mut cites, &report.introduction, &values) })
        }
        SectionKey::Recruitment => {
            json!({ "text": paragraphs(&mut cites, &report.recruitment, &values) })
        }
        SectionKey::Demand => json!({ "text": paragraphs(&mut cites, &report.demand, &values) }),
        SectionKey::Money => json!({ "text": paragraphs(&mut cites, &report.money, &values) }),
        SectionKey::RedFlagIndicators => {
            json!({ "items": report.red_flag_indicators.iter().map(fill).collect::<Vec<_>>() })
        }
        SectionKey::InformationRequirements => {
            json!({ "items": report.information_requirements.iter().map(fill).collect::<Vec<_>>() })
        }
        SectionKey::HeadlineCards => {
            let cards: Vec<Value> = report
                .headline_cards
                .iter()
                .map(|card| {
                    let detail = fill(&card.detail);
                    let marker = cites.mark(&detail);
                    json!({ "pillar": card.pillar, "headline": fill(&card.headline), "detail": format!("{detail}{marker}.") })
                })
                .collect();
            json!({ "cards": cards })
        }
        SectionKey::Disclaimer => json!({}),
    };
    let mut body = body;
    body["citations"] = Value::Array(cites.citations);
    body
}

#[cfg(test)]
mod tests;
