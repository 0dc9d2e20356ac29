//! Domain types of the reports service: the report, its scope, its
//! versions and the KJ content model. Stored as JSON (content, checks,
//! decisions); no protobuf type appears here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

/// Longest reason (`reason` of edits, regenerations and rejections), in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Longest extra instructions for the generator, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 2_000;
/// Shortest and longest justification to keep a PII finding, in characters.
pub const JUSTIFICATION_CHARS: std::ops::RangeInclusive<usize> = 10..=2_000;

/// The fixed disclaimer every report carries; edits to it are refused.
pub const DISCLAIMER: &str = "This report is an intelligence assessment produced from open sources and \
the organisation's own data. It states judgements, not facts, and carries the confidence shown for each \
judgement. It does not identify any individual and must not be used as the sole basis for action against \
any person or business. Recipients should corroborate it against their own information before acting.";

/// A section of a report, named by its key (`key_judgements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Title, country/region, sector/theme, date, issue number, overview.
    TitleBlock,
    /// 5–10 lettered judgements.
    KeyJudgements,
    /// The fixed disclaimer.
    Disclaimer,
    /// INTRODUCTION.
    Introduction,
    /// RECRUITMENT.
    Recruitment,
    /// DEMAND.
    Demand,
    /// MONEY.
    Money,
    /// RED FLAG INDICATORS.
    RedFlagIndicators,
    /// INFORMATION REQUIREMENTS.
    InformationRequirements,
    /// The three headline cards.
    HeadlineCards,
}

impl Section {
    /// Every section, in report order.
    pub const ALL: [Section; 10] = [
        Section::TitleBlock,
        Section::KeyJudgements,
        Section::Disclaimer,
        Section::Introduction,
        Section::Recruitment,
        Section::Demand,
        Section::Money,
        Section::RedFlagIndicators,
        Section::InformationRequirements,
        Section::HeadlineCards,
    ];

    /// The key, e.g. `key_judgements`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Section::TitleBlock => "title_block",
            Section::KeyJudgements => "key_judgements",
            Section::Disclaimer => "disclaimer",
            Section::Introduction => "introduction",
            Section::Recruitment => "recruitment",
            Section::Demand => "demand",
            Section::Money => "money",
            Section::RedFlagIndicators => "red_flag_indicators",
            Section::InformationRequirements => "information_requirements",
            Section::HeadlineCards => "headline_cards",
        }
    }

    /// The heading printed above it.
    pub const fn heading(self) -> &'static str {
        match self {
            Section::TitleBlock => "TITLE",
            Section::KeyJudgements => "KEY JUDGEMENTS",
            Section::Disclaimer => "DISCLAIMER",
            Section::Introduction => "INTRODUCTION",
            Section::Recruitment => "RECRUITMENT",
            Section::Demand => "DEMAND",
            Section::Money => "MONEY",
            Section::RedFlagIndicators => "RED FLAG INDICATORS",
            Section::InformationRequirements => "INFORMATION REQUIREMENTS",
            Section::HeadlineCards => "HEADLINE CARDS",
        }
    }

    /// The sections the generator writes (all but the disclaimer).
    pub fn generated() -> Vec<Section> {
        Section::ALL
            .into_iter()
            .filter(|s| *s != Section::Disclaimer)
            .collect()
    }

    /// A section key from a request; the disclaimer is refused when
    /// `editable` (it is fixed).
    pub fn parse_editable(field: &str, raw: &str) -> Result<Section, ServiceError> {
        let section: Section = raw.parse().map_err(|_| {
            ServiceError::invalid_field(
                field,
                format!(
                    "unknown section {raw:?}; one of {}",
                    Section::ALL.map(Section::as_str).join(", ")
                ),
            )
        })?;
        if section == Section::Disclaimer {
            return Err(ServiceError::invalid_field(
                field,
                "the disclaimer is fixed and cannot be changed",
            ));
        }
        Ok(section)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Section {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Section::ALL
            .into_iter()
            .find(|section| section.as_str() == s)
            .ok_or(())
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The stored name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a report is in its workflow.
    Status {
        /// The generation job is running.
        Generating = "generating",
        /// Generated or edited; editable.
        Draft = "draft",
        /// Submitted for review.
        InReview = "in_review",
        /// Approved; may be exported and shared.
        Approved = "approved",
        /// Exported at least once since approval.
        Exported = "exported",
        /// Generation failed.
        Failed = "failed",
    }
);

string_enum!(
    /// The kind of exploitation.
    ExploitationType {
        /// Labour.
        Labour = "labour",
        /// Sexual.
        Sexual = "sexual",
        /// Online.
        Online = "online",
        /// Criminal.
        Criminal = "criminal",
        /// More than one.
        Mixed = "mixed",
        /// Any other.
        Other = "other",
    }
);

string_enum!(
    /// The client a report is written for.
    ClientType {
        /// A financial institution.
        Fi = "fi",
        /// A non-governmental organisation.
        Ngo = "ngo",
        /// Law enforcement.
        Le = "le",
    }
);

string_enum!(
    /// What made a version.
    VersionCause {
        /// The generation job.
        Generated = "generated",
        /// An analyst's edit.
        Edited = "edited",
        /// A regenerated section.
        Regenerated = "regenerated",
        /// A rejected section.
        Rejected = "rejected",
    }
);

string_enum!(
    /// An export format.
    ExportFormat {
        /// Markdown.
        Markdown = "markdown",
        /// PDF.
        Pdf = "pdf",
        /// Word.
        Docx = "docx",
    }
);

impl ExportFormat {
    /// The file extension.
    pub const fn extension(self) -> &'static str {
        match self {
            ExportFormat::Markdown => "md",
            ExportFormat::Pdf => "pdf",
            ExportFormat::Docx => "docx",
        }
    }

    /// The MIME type.
    pub const fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Markdown => "text/markdown",
            ExportFormat::Pdf => "application/pdf",
            ExportFormat::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }
}

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The source's UUID in documents.
    pub source_id: String,
    /// As printed.
    pub label: String,
    /// Empty for internal datasets.
    pub url: String,
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
    pub fn replace_section(&mut self, section: Section, from: &Content) {
        let key = section.as_str();
        match section {
            Section::TitleBlock => self.title_block = from.title_block.clone(),
            Section::KeyJudgements => self.key_judgements = from.key_judgements.clone(),
            Section::Disclaimer => self.disclaimer = from.disclaimer.clone(),
            Section::Introduction => self.introduction = from.introduction.clone(),
            Section::Recruitment => self.recruitment = from.recruitment.clone(),
            Section::Demand => self.demand = from.demand.clone(),
            Section::Money => self.money = from.money.clone(),
            Section::RedFlagIndicators => {
                self.red_flag_indicators = from.red_flag_indicators.clone()
            }
            Section::InformationRequirements => {
                self.information_requirements = from.information_requirements.clone()
            }
            Section::HeadlineCards => self.headline_cards = from.headline_cards.clone(),
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
    pub fn clear_section(&mut self, section: Section) {
        self.replace_section(section, &Content::default());
    }

    /// Whether `section` has no content at all.
    pub fn section_is_empty(&self, section: Section) -> bool {
        match section {
            Section::TitleBlock => {
                self.title_block.title.trim().is_empty()
                    && self.title_block.overview.trim().is_empty()
            }
            Section::KeyJudgements => self.key_judgements.is_empty(),
            Section::Disclaimer => self.disclaimer.trim().is_empty(),
            Section::Introduction => self.introduction.trim().is_empty(),
            Section::Recruitment => self.recruitment.trim().is_empty(),
            Section::Demand => self.demand.trim().is_empty(),
            Section::Money => self.money.trim().is_empty(),
            Section::RedFlagIndicators => self.red_flag_indicators.is_empty(),
            Section::InformationRequirements => self.information_requirements.is_empty(),
            Section::HeadlineCards => self.headline_cards.is_empty(),
        }
    }

    /// The free-text fields of `section` (with its citation claims and
    /// flag reasons), as `(field_path, text)`, mutable for redaction.
    pub fn text_fields_mut(&mut self, section: Section) -> Vec<(String, &mut String)> {
        let key = section.as_str();
        let mut fields: Vec<(String, &mut String)> = Vec::new();
        match section {
            Section::TitleBlock => {
                let t = &mut self.title_block;
                fields.push(("title_block.title".into(), &mut t.title));
                fields.push(("title_block.country_region".into(), &mut t.country_region));
                fields.push(("title_block.sector_theme".into(), &mut t.sector_theme));
                fields.push(("title_block.overview".into(), &mut t.overview));
            }
            Section::KeyJudgements => {
                for (i, kj) in self.key_judgements.iter_mut().enumerate() {
                    fields.push((format!("key_judgements[{i}].text"), &mut kj.text));
                }
            }
            Section::Disclaimer => fields.push(("disclaimer".into(), &mut self.disclaimer)),
            Section::Introduction => fields.push(("introduction".into(), &mut self.introduction)),
            Section::Recruitment => fields.push(("recruitment".into(), &mut self.recruitment)),
            Section::Demand => fields.push(("demand".into(), &mut self.demand)),
            Section::Money => fields.push(("money".into(), &mut self.money)),
            Section::RedFlagIndicators => {
                for (i, item) in self.red_flag_indicators.iter_mut().enumerate() {
                    fields.push((format!("red_flag_indicators[{i}]"), item));
                }
            }
            Section::InformationRequirements => {
                for (i, item) in self.information_requirements.iter_mut().enumerate() {
                    fields.push((format!("information_requirements[{i}]"), item));
                }
            }
            Section::HeadlineCards => {
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
    pub fn section_markdown(&self, section: Section) -> String {
        let mut out = String::new();
        match section {
            Section::TitleBlock => {
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
            Section::KeyJudgements => {
                out.push_str("We assess as follows:\n\n");
                for kj in &self.key_judgements {
                    let confidence = match kj.confidence {
                        Confidence::Unspecified => String::new(),
                        c => format!(" ({} confidence)", c.as_str()),
                    };
                    out.push_str(&format!("{}. {}{}\n", kj.letter, kj.text, confidence));
                }
            }
            Section::Disclaimer => {
                out.push_str(&self.disclaimer);
                out.push('\n');
            }
            Section::Introduction => push_text(&mut out, &self.introduction),
            Section::Recruitment => push_text(&mut out, &self.recruitment),
            Section::Demand => push_text(&mut out, &self.demand),
            Section::Money => push_text(&mut out, &self.money),
            Section::RedFlagIndicators => {
                for item in &self.red_flag_indicators {
                    out.push_str(&format!("- {item}\n"));
                }
            }
            Section::InformationRequirements => {
                for (i, item) in self.information_requirements.iter().enumerate() {
                    out.push_str(&format!("{}. {item}\n", i + 1));
                }
            }
            Section::HeadlineCards => {
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

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// ISO 3166-1 alpha-2, upper case; empty when `region` is set.
    pub country: String,
    /// A region, free text.
    pub region: String,
    /// Sector or theme.
    pub sector: String,
    /// The kind of exploitation.
    pub exploitation_type: ExploitationType,
    /// Start of the period covered.
    pub time_start: DateTime<Utc>,
    /// End of the period covered.
    pub time_end: DateTime<Utc>,
    /// Who it is written for.
    pub client_type: ClientType,
}

/// Who approved which version, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// The approver's subject.
    pub approved_by: String,
    /// When.
    pub approved_at: DateTime<Utc>,
    /// The version approved.
    pub version: i32,
}

/// A report without its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// UUID.
    pub id: Uuid,
    /// Owner.
    pub org_id: OrgId,
    /// Title of the latest version.
    pub title: String,
    /// What it is about.
    pub scope: Scope,
    /// Workflow state.
    pub status: Status,
    /// Latest version number, 0 before the first.
    pub latest_version: i32,
    /// Set when approved or exported.
    pub approval: Option<Approval>,
    /// Why generation failed.
    pub failure_reason: String,
    /// The requester.
    pub created_by: String,
    /// When requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One quality check result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityCheck {
    /// Which check (`section_order`, `word_count`…).
    pub kind: QualityKind,
    /// Whether it passes.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// The quality checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityKind {
    /// Sections present in order.
    SectionOrder,
    /// 5–10 key judgements, lettered.
    KeyJudgementCount,
    /// Exactly three cards, one per pillar.
    HeadlineCardCount,
    /// 2,000–3,000 words.
    WordCount,
    /// The fixed disclaimer.
    DisclaimerPresent,
    /// Every claim cited.
    ClaimsCited,
    /// 5–10 red flags.
    RedFlagCount,
}

/// What an analyst decided on a PII finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Replace with the placeholder.
    Redact,
    /// Keep, with a justification.
    Keep,
}

/// A decision on one finding, as stored with a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiDecision {
    /// The finding's stable id.
    pub finding_id: String,
    /// Redact or keep.
    pub action: PiiAction,
    /// Why it is kept; empty for a redaction.
    pub justification: String,
    /// For a kept finding: its id in the text as saved (after the other
    /// findings of the field were redacted), so later scans of the saved
    /// text recognise it as decided.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub saved_finding_id: String,
}

impl PiiDecision {
    /// Validates a decision from a request; `index` names it in errors.
    pub fn parse(
        index: usize,
        finding_id: &str,
        action: Option<PiiAction>,
        justification: &str,
    ) -> Result<PiiDecision, ServiceError> {
        let field = |name: &str| format!("pii_decisions[{index}].{name}");
        if finding_id.is_empty() || finding_id.len() > 64 {
            return Err(ServiceError::invalid_field(
                field("finding_id"),
                "is required (the id of a finding)",
            ));
        }
        let action = action.ok_or_else(|| {
            ServiceError::invalid_field(field("action"), "must be redact or keep")
        })?;
        let justification = justification.trim();
        if action == PiiAction::Keep
            && !JUSTIFICATION_CHARS.contains(&justification.chars().count())
        {
            return Err(ServiceError::invalid_field(
                field("justification"),
                "keeping personal data needs a justification of 10–2,000 characters",
            ));
        }
        Ok(PiiDecision {
            finding_id: finding_id.to_owned(),
            action,
            justification: if action == PiiAction::Keep {
                justification.to_owned()
            } else {
                String::new()
            },
            saved_finding_id: String::new(),
        })
    }
}

/// Personal data found in a field of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct PiiFinding {
    /// Stable id.
    pub id: String,
    /// Its kind.
    pub kind: treven_pii::PiiKind,
    /// The section key; empty outside a report.
    pub section: String,
    /// The field.
    pub field_path: String,
    /// Byte range in the field.
    pub start: usize,
    /// End of the range.
    pub end: usize,
    /// The suggested redaction.
    pub placeholder: String,
}

/// One version, without its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// The report.
    pub report_id: Uuid,
    /// From 1.
    pub number: i32,
    /// SHA-256 of the content.
    pub content_hash: String,
    /// What made it.
    pub cause: VersionCause,
    /// The section changed; `None` for a generated version.
    pub section: Option<Section>,
    /// The author.
    pub author_id: String,
    /// Why.
    pub reason: String,
    /// What changed.
    pub change_summary: String,
    /// Rejected sections not replaced since.
    pub rejected_sections: Vec<Section>,
    /// Its quality checks.
    pub quality_checks: Vec<QualityCheck>,
    /// PII decisions taken when it was saved.
    pub pii_decisions: Vec<PiiDecision>,
    /// When saved.
    pub created_at: DateTime<Utc>,
}

/// A trend for the map.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// UUID.
    pub id: Uuid,
    /// Country, alpha-2.
    pub country: String,
    /// The kind of exploitation.
    pub exploitation_type: ExploitationType,
    /// The statement.
    pub statement: String,
    /// Its confidence.
    pub confidence: Confidence,
    /// Free tags.
    pub tags: Vec<String>,
    /// Its sources.
    pub sources: Vec<SourceRef>,
    /// The report it comes from.
    pub report_id: Uuid,
    /// The version it comes from.
    pub report_version: i32,
    /// When last updated.
    pub updated_at: DateTime<Utc>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_cursor: String,
}

/// A UUID from a request field.
pub fn parse_id(field: &str, raw: &str) -> Result<Uuid, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid_field(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| ServiceError::invalid_field(field, "must be a UUID"))
}

/// A reason of 1–1,000 characters.
pub fn parse_reason(field: &str, raw: &str) -> Result<String, ServiceError> {
    let reason = raw.trim();
    if reason.is_empty() {
        return Err(ServiceError::invalid_field(field, "is required"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(reason.to_owned())
}

/// A country code: two ASCII letters, returned in upper case.
pub fn parse_country(field: &str, raw: &str) -> Result<String, ServiceError> {
    let raw = raw.trim();
    if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(raw.to_ascii_uppercase())
    } else {
        Err(ServiceError::invalid_field(
            field,
            "must be an ISO 3166-1 alpha-2 code such as GB",
        ))
    }
}
