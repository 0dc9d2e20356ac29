//! The offline provider: deterministic, no network. It writes a well-formed
//! KJ report section from the sources of a generator task, and answers chat
//! by searching sources once and summarising what it found, so the whole
//! product works without a model account. Usage is estimated at four
//! characters per token and costs nothing.

use serde_json::{Value, json};

use super::{Block, EventStream, ModelEvent, ModelRequest, Provider, Role, StopReason, Usage};
use crate::generator::{Pillar, ScopeBrief, SectionKey, SectionTask, SourceBrief};

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
        "The offline assistant found no stored sources matching the question. Add sources in the documents library, or configure a model provider for full answers.".to_owned()
    } else {
        format!(
            "The offline assistant found {} relevant source(s): {}. Review them in the sources library; configure a model provider for analysed answers.",
            sources.len(),
            sources.join("; ")
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
        "the area of interest".to_owned()
    }
}

fn sector(scope: &ScopeBrief) -> String {
    if scope.sector.is_empty() {
        "the sectors in scope".to_owned()
    } else {
        scope.sector.clone()
    }
}

fn exploitation(scope: &ScopeBrief) -> String {
    match scope.exploitation.as_str() {
        "" | "mixed" | "other" => "human trafficking and exploitation".to_owned(),
        kind => format!("{kind} exploitation"),
    }
}

fn period(scope: &ScopeBrief) -> String {
    match (scope.from, scope.to) {
        (Some(from), Some(to)) => format!(
            "the period from {} to {}",
            from.format("%B %Y"),
            to.format("%B %Y")
        ),
        _ => "the last twelve months".to_owned(),
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

fn paragraphs(cites: &mut Cites<'_>, paragraphs: &[[String; 4]]) -> String {
    paragraphs
        .iter()
        .map(|sentences| {
            let marker = cites.mark(&sentences[0]);
            format!(
                "{}{marker}. {}. {}. {}.",
                sentences[0], sentences[1], sentences[2], sentences[3]
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The deterministic answer of the offline provider to a section task, in
/// the JSON shape of [`crate::generator::SectionJson`].
pub fn section_json(task: &SectionTask) -> Value {
    let scope = &task.scope;
    let (p, s, e, t) = (
        place(scope),
        sector(scope),
        exploitation(scope),
        period(scope),
    );
    let lead = task
        .sources
        .first()
        .map(|src| format!("{} ({})", src.title, src.publisher))
        .unwrap_or_else(|| "the material available".to_owned());
    let n = task.sources.len();
    let mut cites = Cites {
        sources: &task.sources,
        next: 0,
        citations: Vec::new(),
    };
    let body = match task.section {
        SectionKey::TitleBlock => {
            let m1 = cites.mark("reporting indicates sustained exploitation");
            let m2 = cites.mark("recruitment and financial patterns recur");
            json!({
                "title": format!("{} IN {}: {}", e, s, p).to_uppercase(),
                "country_region": p,
                "sector_theme": s,
                "overview": format!(
                    "This assessment examines {e} in {s} in {p} over {t}. Open reporting indicates that exploitation in the sector is sustained and organised rather than opportunistic{m1}. Recruitment, demand and financial patterns recur across the {n} sources reviewed, led by {lead}{m2}. The report sets out key judgements, the indicators that financial institutions can act on and the gaps that further collection should close. Confidence is moderate overall and is stated against each judgement."
                ),
            })
        }
        SectionKey::KeyJudgements => {
            let judgements = [
                (
                    format!(
                        "We assess that {e} in {s} in {p} persisted at a significant scale throughout {t}, sustained by structural demand for low-cost and flexible labour"
                    ),
                    "high",
                ),
                (
                    "We assess that recruitment relies mainly on deceptive job offers circulated through informal intermediaries and social media, with fees that create debt from the outset".to_owned(),
                    "high",
                ),
                (
                    format!(
                        "We assess that exploiters use a mix of registered businesses and informal arrangements, making the activity hard to separate from legitimate employment in {s}"
                    ),
                    "medium",
                ),
                (
                    "We assess that proceeds move through ordinary retail accounts, cash withdrawals and money service businesses in amounts chosen to avoid attention".to_owned(),
                    "medium",
                ),
                (
                    "We assess that workers are controlled through debt, withheld documents and isolated accommodation rather than through overt physical confinement".to_owned(),
                    "medium",
                ),
                (
                    format!(
                        "We assess that seasonal peaks in {s} raise the risk of exploitation and that enforcement capacity does not scale with those peaks"
                    ),
                    "medium",
                ),
                (
                    format!(
                        "We assess that reporting gaps mean the true scale in {p} is likely to be larger than recorded cases suggest"
                    ),
                    "low",
                ),
            ];
            let items: Vec<Value> = judgements
                .iter()
                .map(|(text, confidence)| {
                    let marker = cites.mark(text);
                    json!({ "text": format!("{text}{marker}."), "confidence": confidence })
                })
                .collect();
            json!({ "items": items })
        }
        SectionKey::Introduction => {
            let text = paragraphs(&mut cites, &[
                [
                    format!("This report assesses {e} affecting {s} in {p} during {t}, drawing on {n} sources led by {lead}"),
                    "It is written for organisations that need to recognise the activity in their own operations, customer relationships and supply chains, and to decide where to direct scarce investigative effort".to_owned(),
                    "The assessment follows the three pillars used throughout Treven reporting: how people are recruited, what drives the demand for their labour or services, and how the money generated by their exploitation moves through the financial system".to_owned(),
                    "Each pillar is examined in turn, and each judgement is graded for confidence so that readers can weigh it against their own information and experience".to_owned(),
                ],
                [
                    format!("The sources reviewed include official statistics, research by non-governmental organisations, investigative journalism and, where available, internal datasets relating to {p}"),
                    "Sources were scored for trust on the basis of the publisher, the recency of the material, whether it presents primary data, whether its methodology is documented and how closely it matches the geography in question".to_owned(),
                    "Higher-scoring sources carry more weight in the judgements, and claims that rest on a single lower-scoring source are identified as such in the text and in the uncertainty flags".to_owned(),
                    "Where sources disagree, the assessment states the disagreement rather than resolving it artificially, and explains which reading it prefers and why".to_owned(),
                ],
                [
                    format!("Exploitation in {s} is by its nature under-reported, and recorded cases represent only a part of the activity"),
                    "Workers often do not identify as victims, fear the consequences of coming forward or depend on the people exploiting them for work, housing and immigration status".to_owned(),
                    "As a result the figures cited here should be read as indicators of pattern and direction rather than as measures of total prevalence".to_owned(),
                    "The information requirements at the end of the report set out the questions whose answers would most improve confidence in future assessments".to_owned(),
                ],
                [
                    format!("The period covered, {t}, saw continued attention to {e} from government, civil society and the private sector"),
                    "Public reporting, referral figures and investigative work over the period provide a reasonable basis for the patterns described, although coverage is uneven across regions and types of business".to_owned(),
                    "Where this report relies on internal datasets, they are cited with their date range so that readers can judge how current the evidence is".to_owned(),
                    "Readers with access to additional information are encouraged to test the judgements against it and to share relevant findings through established channels".to_owned(),
                ],
            ]);
            json!({ "text": text })
        }
        SectionKey::Recruitment => {
            let text = paragraphs(&mut cites, &[
                [
                    format!("Recruitment into {e} in {s} begins most often with an offer of work that appears legitimate"),
                    "Advertisements circulate on social media groups, messaging applications and informal job boards, and promise wages, hours and accommodation that compare favourably with the options available to the people targeted".to_owned(),
                    "The offers are frequently made in the language of the community being targeted and are passed on by word of mouth, which lends them credibility they would not otherwise have".to_owned(),
                    "Contact details change frequently, and the same offer is reposted under different names once earlier versions attract attention".to_owned(),
                ],
                [
                    "Intermediaries play a central role in moving people from the first contact to the workplace".to_owned(),
                    "Some operate as informal agents within a community, while others run registered businesses that provide transport, accommodation or payroll services alongside recruitment".to_owned(),
                    "Recruitment fees, travel costs and deposits for accommodation are charged at the outset, creating a debt that the worker is told will be repaid from wages".to_owned(),
                    "The debt is then used to justify deductions, to extend working hours and to discourage workers from leaving before it is cleared".to_owned(),
                ],
                [
                    format!("Reporting on {p} points to the targeting of people whose circumstances limit their alternatives"),
                    "Recent arrivals, people with insecure immigration status, people with limited command of the local language and people already in debt are repeatedly identified as being at higher risk".to_owned(),
                    "Recruiters exploit these vulnerabilities deliberately, presenting themselves as the only route to work and housing and discouraging contact with official services".to_owned(),
                    "Where documents are involved, recruiters commonly arrange them on the worker's behalf and then retain them as a means of control".to_owned(),
                ],
                [
                    "The recruitment picture has adapted to enforcement pressure over the period".to_owned(),
                    "As platforms remove overt advertisements, recruiters have moved to closed groups and direct messaging, and have made greater use of existing workers to recruit friends and relatives".to_owned(),
                    "This shift makes recruitment harder to observe from the outside and increases the importance of information held by employers, labour providers and financial institutions".to_owned(),
                    "It also means that early indicators are more likely to appear in payment and account behaviour than in public advertising".to_owned(),
                ],
                [
                    "Transport and accommodation arranged by recruiters are a further point of control".to_owned(),
                    "Workers are often collected from arrival points, driven to shared housing chosen by the recruiter and charged for both, with costs set well above market rates".to_owned(),
                    "Accommodation shared by large numbers of unrelated workers, located close to worksites and managed by the same people who arrange the work, recurs across the cases reviewed".to_owned(),
                    "These arrangements leave workers dependent on the recruiter for the basic necessities of daily life and make leaving the work far more difficult".to_owned(),
                ],
            ]);
            json!({ "text": text })
        }
        SectionKey::Demand => {
            let text = paragraphs(&mut cites, &[
                [
                    format!("Demand for exploited labour in {s} is driven by pressure on costs and by the need for a workforce that can be expanded and reduced at short notice"),
                    "Businesses operating on thin margins, or supplying buyers who drive prices down, have strong incentives to reduce labour costs and to avoid the obligations that come with direct employment".to_owned(),
                    "Labour supplied through intermediaries allows them to do so while maintaining distance from the conditions under which the work is done".to_owned(),
                    "This distance is a recurring feature of the cases reviewed and is one reason exploitation persists in supply chains that appear compliant on paper".to_owned(),
                ],
                [
                    format!("Seasonal and peak demand in {s} creates predictable windows of heightened risk"),
                    "During these periods the number of workers needed rises sharply, checks on labour providers are compressed and new, less established providers enter the market".to_owned(),
                    "Reporting indicates that exploitative providers take advantage of these windows to place workers quickly and with little scrutiny".to_owned(),
                    "Enforcement and inspection capacity does not rise in step with demand, so the likelihood of detection falls at exactly the point when the volume of activity is greatest".to_owned(),
                ],
                [
                    "Subcontracting chains add further layers between the business that benefits from the work and the people doing it".to_owned(),
                    "Each additional layer reduces visibility of pay, hours and living conditions and makes it easier for responsibility to be disputed when problems are found".to_owned(),
                    "In several reported cases the principal business was unaware of the identity of the workers on its premises, knowing only the company that invoiced for their time".to_owned(),
                    "Such arrangements are not in themselves evidence of exploitation, but they are a common setting for it and merit closer due diligence".to_owned(),
                ],
                [
                    format!("Consumer and buyer demand in {p} is unlikely to fall in the near term, and the structural drivers described here are expected to persist"),
                    "Shortages of labour in the sector, rising costs and continued price pressure from buyers all point to sustained demand for cheap and flexible labour".to_owned(),
                    "Without stronger checks on labour providers and greater transparency in subcontracting, the conditions that enable exploitation are likely to continue".to_owned(),
                    "Changes to the regulation of labour providers or to the enforcement of minimum standards would be the most significant indicators of a shift in this outlook".to_owned(),
                ],
            ]);
            json!({ "text": text })
        }
        SectionKey::Money => {
            let text = paragraphs(&mut cites, &[
                [
                    format!("The proceeds of {e} in {s} move predominantly through the mainstream financial system"),
                    "Wages are commonly paid into accounts that workers do not control, or are paid to workers and then withdrawn or transferred to the exploiter shortly after receipt".to_owned(),
                    "Cash remains important at several stages, including the payment of recruitment fees and the collection of rent and other deductions".to_owned(),
                    "The amounts involved per worker are often modest, which allows the activity to blend into ordinary account behaviour unless patterns across accounts are examined together".to_owned(),
                ],
                [
                    "Control of workers' accounts is a recurring financial indicator".to_owned(),
                    "Multiple accounts may be opened in quick succession using the same address, telephone number or device, and then accessed by a single individual or from a single location".to_owned(),
                    "Salary payments arrive from a labour provider and are moved on within hours, leaving little for the account holder's own living costs".to_owned(),
                    "Card and online banking credentials are frequently held by the controller rather than by the worker, which can show up as access patterns inconsistent with the account holder's circumstances".to_owned(),
                ],
                [
                    "Money service businesses and cross-border transfers feature in the onward movement of proceeds".to_owned(),
                    "Funds are aggregated from several accounts and sent abroad in amounts that fall below reporting thresholds, sometimes to the same small number of recipients".to_owned(),
                    "Some reporting also points to the use of businesses in the sector to mix criminal proceeds with legitimate turnover, for example through inflated invoices for labour or accommodation".to_owned(),
                    "These methods are not unique to exploitation, which is why combining financial indicators with information about employment and accommodation matters".to_owned(),
                ],
                [
                    "Financial institutions are well placed to detect these patterns because they see activity across many accounts that no single employer or agency can see".to_owned(),
                    "The red flag indicators in the next section are drawn from the patterns described here and are intended to support existing transaction monitoring rather than replace it".to_owned(),
                    "Indicators are strongest in combination: a single indicator rarely justifies action, but several occurring together across linked accounts should prompt review".to_owned(),
                    "Information shared through established public and private partnerships would further improve the quality of detection".to_owned(),
                ],
                [
                    "Payments linked to accommodation, transport and recruitment debts create a distinctive financial footprint".to_owned(),
                    "Regular transfers of similar amounts from many accounts to one recipient, often on the same day as wages arrive, are typical of deductions taken by a controller".to_owned(),
                    "Where the recipient is a business, its declared activity may bear little relation to the payments it receives, or it may have been incorporated recently with minimal filings".to_owned(),
                    "Examining these flows across customers, rather than account by account, is the most reliable way to bring them to light".to_owned(),
                ],
            ]);
            json!({ "text": text })
        }
        SectionKey::RedFlagIndicators => json!({ "items": [
            "Several accounts opened within a short period that share an address, telephone number, device or employer, particularly where the holders are recent arrivals.",
            "Salary credits from a labour provider that are withdrawn in cash or transferred to a third party within hours of receipt, leaving little for living costs.",
            "One individual or device accessing, or making transactions on, several unrelated customers' accounts.",
            "Regular payments from many workers' accounts to the same individual or business, described as rent, transport or fees.",
            "Cash deposits or onward transfers just below reporting thresholds, aggregated from several accounts and sent abroad to a small group of recipients.",
            format!("Businesses in {s} whose payroll is high relative to declared turnover, or which pay staff through third-party accounts."),
            "Account holders who appear unaware of their own account details, or who are accompanied by someone who answers for them.",
            "Newly incorporated labour providers or accommodation businesses receiving regular payments from many individuals soon after their wages are paid.",
        ]}),
        SectionKey::InformationRequirements => json!({ "items": [
            format!("What is the scale of recorded and unrecorded {e} in {s} in {p}, and how has it changed over {t}?"),
            "Which labour providers and intermediaries recur across reported cases, and how are they connected to one another?",
            "Which online platforms and messaging channels are currently used for recruitment, and how quickly do recruiters move between them?",
            "How are proceeds moved out of the country, and which payment channels and destinations are most used?",
            format!("How does the risk change during seasonal peaks in {s}, and which checks on labour providers are relaxed at those times?"),
            "Which indicators in this report are most often present in confirmed cases, and which generate the most false alerts?",
        ]}),
        SectionKey::HeadlineCards => {
            let cards = [
                (Pillar::Recruitment, "Most cases begin with a deceptive job offer", "Recruitment relies on offers circulated through social media and informal intermediaries, with upfront fees creating debt from the start".to_owned()),
                (Pillar::Demand, "Risk peaks with seasonal demand", format!("Seasonal peaks in {s} compress checks on labour providers while enforcement capacity stays flat")),
                (Pillar::Money, "Wages leave workers' accounts within hours", "Salary credits are withdrawn or moved on quickly, often by a controller who holds the workers' banking credentials".to_owned()),
            ];
            let cards: Vec<Value> = cards
                .iter()
                .map(|(pillar, headline, detail)| {
                    let marker = cites.mark(detail);
                    json!({ "pillar": pillar, "headline": headline, "detail": format!("{detail}{marker}.") })
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::{HashMap, HashSet};

    use chrono::Utc;

    use super::*;
    use crate::generator::{CitationIds, GeneratedSection, SectionBody, parse_section};

    fn sources() -> Vec<SourceBrief> {
        (1..=4)
            .map(|i| SourceBrief {
                id: format!("00000000-0000-7000-8000-00000000000{i}"),
                label: format!("Home Office, Modern Slavery Statistics {i} (2025)"),
                url: format!("https://www.gov.uk/stats/{i}"),
                title: format!("Modern Slavery Statistics {i}"),
                publisher: "Home Office".into(),
                summary: "National referral statistics".into(),
                trust: 85,
            })
            .collect()
    }

    /// Every text field of a section, as the word count sees it.
    fn texts(section: &GeneratedSection) -> Vec<(String, String)> {
        match &section.body {
            SectionBody::TitleBlock(t) => vec![
                ("title".into(), t.title.clone()),
                ("country_region".into(), t.country_region.clone()),
                ("sector_theme".into(), t.sector_theme.clone()),
                ("overview".into(), t.overview.clone()),
            ],
            SectionBody::KeyJudgements(items) => items
                .iter()
                .map(|j| ("kj".into(), j.text.clone()))
                .collect(),
            SectionBody::Text(text) => vec![("text".into(), text.clone())],
            SectionBody::List(items) => items.iter().map(|i| ("item".into(), i.clone())).collect(),
            SectionBody::Cards(cards) => cards
                .iter()
                .flat_map(|c| {
                    [
                        ("headline".into(), c.headline.clone()),
                        ("detail".into(), c.detail.clone()),
                    ]
                })
                .collect(),
        }
    }

    fn markers(text: &str) -> Vec<String> {
        text.split('[')
            .skip(1)
            .filter_map(|rest| rest.split_once(']').map(|(inner, _)| inner.to_owned()))
            .filter(|inner| {
                inner.starts_with('c') && inner[1..].chars().all(|c| c.is_ascii_digit())
            })
            .collect()
    }

    #[test]
    fn the_offline_report_passes_every_quality_check() {
        let scope = ScopeBrief {
            country: "GB".into(),
            sector: "agriculture".into(),
            exploitation: "labour".into(),
            ..ScopeBrief::default()
        };
        let mut ids = CitationIds::default();
        let mut sections = Vec::new();
        for key in SectionKey::generated() {
            let task = SectionTask {
                section: key,
                scope: scope.clone(),
                sources: sources(),
                instructions: String::new(),
            };
            let raw = section_json(&task).to_string();
            sections.push(parse_section(&task, &raw, &mut ids, 1, Utc::now()).unwrap());
        }
        let mut words = 0;
        let mut all_ids = HashSet::new();
        for section in &sections {
            let cited: HashMap<&str, _> = section
                .citations
                .iter()
                .map(|c| (c.id.as_str(), c))
                .collect();
            for citation in &section.citations {
                assert!(
                    all_ids.insert(citation.id.clone()),
                    "citation ids are unique"
                );
                assert_eq!(citation.section, section.section);
            }
            for (field, text) in texts(section) {
                assert!(
                    !text.trim().is_empty(),
                    "{:?} {field} is empty",
                    section.section
                );
                words += text.split_whitespace().count();
                for marker in markers(&text) {
                    assert!(
                        cited.contains_key(marker.as_str()),
                        "{marker} resolves in {:?}",
                        section.section
                    );
                }
                assert!(
                    treven_pii::detect(&text).unwrap().is_empty(),
                    "no personal data in {:?}: {text}",
                    section.section
                );
            }
            match &section.body {
                SectionBody::TitleBlock(t) => {
                    assert_eq!(t.title, t.title.to_uppercase());
                    let sentences = t.overview.matches(". ").count() + 1;
                    assert!((3..=5).contains(&sentences), "{sentences} sentences");
                }
                SectionBody::KeyJudgements(items) => {
                    assert!((5..=10).contains(&items.len()));
                    for (i, j) in items.iter().enumerate() {
                        assert_eq!(j.letter, char::from(b'A' + i as u8).to_string());
                        assert!(!markers(&j.text).is_empty(), "judgement {i} cites");
                    }
                }
                SectionBody::Text(text) => {
                    for paragraph in text.split("\n\n") {
                        assert!(
                            !markers(paragraph).is_empty(),
                            "paragraph cites: {paragraph}"
                        );
                    }
                }
                SectionBody::List(items) => {
                    if section.section == SectionKey::RedFlagIndicators {
                        assert!((5..=10).contains(&items.len()));
                    }
                }
                SectionBody::Cards(cards) => {
                    let pillars: Vec<Pillar> = cards.iter().map(|c| c.pillar).collect();
                    assert_eq!(
                        pillars,
                        [Pillar::Recruitment, Pillar::Demand, Pillar::Money]
                    );
                    assert!(cards.iter().all(|c| !markers(&c.detail).is_empty()));
                }
            }
        }
        // The disclaimer (fixed text, about 100 words) is added by reports.
        assert!(
            (2_100..=2_800).contains(&words),
            "{words} words before the disclaimer"
        );
    }

    #[test]
    fn offline_chat_searches_then_answers() {
        let request = ModelRequest {
            turns: vec![crate::provider::Turn::user(
                "What drives labour exploitation in farming?",
            )],
            tools: vec![crate::tools::spec(crate::model::Tool::SearchSources)],
            ..ModelRequest::default()
        };
        let ChatStep::Call { name, input } = chat_step(&request) else {
            panic!("searches first")
        };
        assert_eq!(name, "search_sources");
        assert_eq!(input["text"], "What drives labour exploitation in farming?");
    }

    #[tokio::test]
    async fn the_configured_latency_comes_before_the_first_event_only() {
        use futures::StreamExt as _;
        let latency = std::time::Duration::from_millis(300);
        let request = || ModelRequest {
            turns: vec![crate::provider::Turn::user("Hello")],
            ..ModelRequest::default()
        };
        let started = std::time::Instant::now();
        let mut slow = OfflineProvider::with_latency(latency).stream(request());
        slow.next().await.unwrap().unwrap();
        let first = started.elapsed();
        assert!(first >= latency, "first event after {first:?}");
        let rest: Vec<_> = slow.collect().await;
        assert!(!rest.is_empty(), "the rest follows");
        let events: Vec<_> = OfflineProvider::default().stream(request()).collect().await;
        assert_eq!(events.len(), rest.len() + 1, "the same answer, only later");
    }
}

#[cfg(test)]
mod golden_tmp {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::provider::{ToolSpec, Turn};

    #[test]
    fn golden_tmp_dump() {
        let mut out = String::new();
        let src = |n: usize| -> Vec<SourceBrief> {
            (1..=n)
                .map(|i| SourceBrief {
                    id: format!("id-{i}"),
                    label: format!("Label {{p}} {i}"),
                    url: String::new(),
                    title: format!("Title {i}"),
                    publisher: "Pub {s}".into(),
                    summary: String::new(),
                    trust: 50,
                })
                .collect()
        };
        let scopes = [
            ScopeBrief::default(),
            ScopeBrief {
                country: "GB".into(),
                sector: "agriculture {e}".into(),
                exploitation: "labour".into(),
                from: chrono::DateTime::from_timestamp(1_700_000_000, 0),
                to: chrono::DateTime::from_timestamp(1_730_000_000, 0),
                ..ScopeBrief::default()
            },
            ScopeBrief {
                region: "West {t} Africa".into(),
                exploitation: "mixed".into(),
                ..ScopeBrief::default()
            },
        ];
        for scope in &scopes {
            for n in [0, 1, 3, 9] {
                for section in SectionKey::generated()
                    .into_iter()
                    .chain([SectionKey::Disclaimer])
                {
                    let task = SectionTask {
                        section,
                        scope: scope.clone(),
                        sources: src(n),
                        instructions: String::new(),
                    };
                    out.push_str(&section_json(&task).to_string());
                    out.push('\n');
                }
            }
        }
        let spec = ToolSpec {
            name: "search_sources",
            description: "",
            schema: json!({}),
        };
        let requests = [
            ModelRequest {
                turns: vec![Turn::user(
                    "What about {s} agriculture in the UK today and more words",
                )],
                tools: vec![spec.clone()],
                ..ModelRequest::default()
            },
            ModelRequest {
                turns: vec![Turn::user(
                    "Summarise.\n---\nFirst sentence here. Second one! Third? ".repeat(20),
                )],
                ..ModelRequest::default()
            },
            ModelRequest {
                turns: vec![
                    Turn::user("q"),
                    Turn {
                        role: Role::User,
                        blocks: vec![Block::ToolResult {
                            id: "x".into(),
                            name: "search_sources".into(),
                            content: json!({"sources": [{"label": "A {p}"}, {"label": "B"}]}),
                            is_error: false,
                        }],
                    },
                ],
                tools: vec![spec.clone()],
                ..ModelRequest::default()
            },
            ModelRequest {
                turns: vec![
                    Turn::user("q"),
                    Turn {
                        role: Role::User,
                        blocks: vec![Block::ToolResult {
                            id: "x".into(),
                            name: "search_sources".into(),
                            content: json!({"sources": []}),
                            is_error: false,
                        }],
                    },
                ],
                tools: vec![spec],
                ..ModelRequest::default()
            },
        ];
        for request in &requests {
            match chat_step(request) {
                ChatStep::Call { name, input } => out.push_str(&format!("CALL {name} {input}\n")),
                ChatStep::Answer(text) => out.push_str(&format!("ANSWER {text}\n")),
            }
        }
        std::fs::write(std::env::var("GOLDEN_OUT").unwrap(), out).unwrap();
    }
}
