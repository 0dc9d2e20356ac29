//! Domain types of the reports service: the report, its scope, its
//! versions and the KJ content model. Stored as JSON (content, checks,
//! decisions); no protobuf type appears here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

mod review;

pub use review::{
    Comment, MAX_COMMENT_CHARS, MAX_RECIPIENTS, MAX_REFERENCED_COMMENTS, NewNotification,
    Notification, NotificationKind, recipients,
};

/// Longest reason (`reason` of edits, regenerations and rejections), in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Longest extra instructions for the generator, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 2_000;
/// Shortest and longest justification to keep a PII finding, in characters.
pub const JUSTIFICATION_CHARS: std::ops::RangeInclusive<usize> = 10..=2_000;
/// Shortest and longest justification of an admin's quality-gate override,
/// in characters.
pub const OVERRIDE_JUSTIFICATION_CHARS: std::ops::RangeInclusive<usize> = 10..=1_000;

/// A section of a report, named by its key (`key_judgements`).
pub use treven_kj::SectionKey as Section;
/// The KJ content model, shared with the agents service (see [`treven_kj`]).
pub use treven_kj::{
    Citation, Confidence, Content, DISCLAIMER, HeadlineCard, KeyJudgement, Pillar, SourceRef,
    TitleBlock, UncertaintyFlag,
};

treven_mesh::text_enum! {
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
}

treven_mesh::text_enum! {
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
}

treven_mesh::text_enum! {
    /// The client a report is written for.
    ClientType {
        /// A financial institution.
        Fi = "fi",
        /// A non-governmental organisation.
        Ngo = "ngo",
        /// Law enforcement.
        Le = "le",
    }
}

treven_mesh::text_enum! {
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
}

treven_mesh::text_enum! {
    /// An export format.
    ExportFormat {
        /// Markdown.
        Markdown = "markdown",
        /// PDF.
        Pdf = "pdf",
        /// Word.
        Docx = "docx",
    }
}

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

/// Who sent which version for review, and when (four-eyes approval compares
/// the approver with the submitter).
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The submitter's subject.
    pub submitted_by: String,
    /// When.
    pub submitted_at: DateTime<Utc>,
    /// The version submitted.
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
    /// The last submission for review; `None` if never submitted.
    pub submission: Option<Submission>,
    /// Why generation failed.
    pub failure_reason: String,
    /// The requester.
    pub created_by: String,
    /// When requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Set while archived (hidden from the default list, still readable).
    pub archival: Option<Archival>,
    /// The reviewer assigned, if any.
    pub reviewer: Option<ReviewerAssignment>,
}

/// The reviewer assigned to a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewerAssignment {
    /// The reviewer's subject.
    pub reviewer_id: String,
    /// The reviewer's user id in tenants.
    pub user_id: Uuid,
    /// Who assigned them (subject).
    pub assigned_by: String,
    /// When.
    pub assigned_at: DateTime<Utc>,
}

/// Who archived a report, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archival {
    /// The user (their Cognito subject).
    pub archived_by: String,
    /// When.
    pub archived_at: DateTime<Utc>,
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

/// The quality checks. Each is either blocking (SubmitReport refuses a
/// version that fails it, unless an admin overrides with a justification)
/// or advisory (shown, never enforced): see [`QualityKind::is_blocking`].
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

impl QualityKind {
    /// Whether SubmitReport enforces the check. Blocking: key judgement
    /// count, headline card count, word count, disclaimer and citations.
    /// Advisory: section order and red flag count.
    pub const fn is_blocking(self) -> bool {
        match self {
            QualityKind::KeyJudgementCount
            | QualityKind::HeadlineCardCount
            | QualityKind::WordCount
            | QualityKind::DisclaimerPresent
            | QualityKind::ClaimsCited => true,
            QualityKind::SectionOrder | QualityKind::RedFlagCount => false,
        }
    }

    /// The snake_case name, as stored and audited (`claims_cited`).
    pub const fn as_str(self) -> &'static str {
        match self {
            QualityKind::SectionOrder => "section_order",
            QualityKind::KeyJudgementCount => "key_judgement_count",
            QualityKind::HeadlineCardCount => "headline_card_count",
            QualityKind::WordCount => "word_count",
            QualityKind::DisclaimerPresent => "disclaimer_present",
            QualityKind::ClaimsCited => "claims_cited",
            QualityKind::RedFlagCount => "red_flag_count",
        }
    }
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
        if finding_id.is_empty() || finding_id.chars().count() > 64 {
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

pub use treven_mesh::wire::parse_id;

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

/// An admin's justification to override failed blocking quality checks:
/// `None` when empty, else trimmed and 10–1,000 characters.
pub fn parse_override_justification(
    field: &str,
    raw: &str,
) -> Result<Option<String>, ServiceError> {
    let justification = raw.trim();
    if justification.is_empty() {
        return Ok(None);
    }
    if !OVERRIDE_JUSTIFICATION_CHARS.contains(&justification.chars().count()) {
        return Err(ServiceError::invalid_field(
            field,
            "an override needs a justification of 10–1,000 characters",
        ));
    }
    Ok(Some(justification.to_owned()))
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
