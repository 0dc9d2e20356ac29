//! Domain types of the agents service (no protobuf here).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use treven_mesh::OrgId;
use uuid::Uuid;

use crate::generator::SourceRef;
use crate::provider::Usage;

/// A kind of agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// Collects and ranks trusted sources for a scenario.
    Osint,
    /// Drafts the KJ report from sources.
    Generator,
    /// Summarises text or the change between two versions.
    Summarise,
    /// Writes safe lines for a public post from approved content.
    Social,
    /// Checks text against the PII policy.
    Pii,
}

/// A tool an agent may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// Searches sources in the documents service.
    SearchSources,
    /// Queries internal datasets (dataset sources).
    QueryDataset,
    /// Detects personal data.
    DetectPii,
    /// Makes a citation of a source for a claim.
    MakeCitation,
    /// Rates the confidence of a judgement.
    RateConfidence,
    /// Stores evidence in the documents service.
    StoreEvidence,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 6] = [
        Tool::SearchSources,
        Tool::QueryDataset,
        Tool::DetectPii,
        Tool::MakeCitation,
        Tool::RateConfidence,
        Tool::StoreEvidence,
    ];

    /// The name models use.
    pub const fn name(self) -> &'static str {
        match self {
            Tool::SearchSources => "search_sources",
            Tool::QueryDataset => "query_dataset",
            Tool::DetectPii => "detect_pii",
            Tool::MakeCitation => "make_citation",
            Tool::RateConfidence => "rate_confidence",
            Tool::StoreEvidence => "store_evidence",
        }
    }

    /// The tool named `name`.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Where a tool call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolStatus {
    /// Called; no result yet.
    Running,
    /// Returned a result.
    Succeeded,
    /// Failed; the model was told.
    Failed,
}

/// One call of a tool by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The model's id of the call.
    pub id: String,
    /// The tool; `None` when the model named an unknown tool.
    pub tool: Option<Tool>,
    /// The arguments.
    pub arguments: Value,
    /// Where it is.
    pub status: ToolStatus,
    /// A short line about the result.
    pub summary: String,
}

/// The research context of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationContext {
    /// ISO country code, or empty.
    pub country: String,
    /// Sector, or empty.
    pub sector: String,
    /// Start of the period.
    pub from: Option<DateTime<Utc>>,
    /// End of the period.
    pub to: Option<DateTime<Utc>>,
}

/// An analyst's chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// UUID.
    pub id: Uuid,
    /// Its organisation.
    pub org_id: OrgId,
    /// 0–200 characters.
    pub title: String,
    /// The research context.
    pub context: ConversationContext,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When its last message was added.
    pub updated_at: DateTime<Utc>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// The analyst.
    User,
    /// The model.
    Assistant,
    /// The platform.
    System,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// UUID v7 (time-ordered).
    pub id: Uuid,
    /// The conversation.
    pub conversation_id: Uuid,
    /// Who wrote it.
    pub role: MessageRole,
    /// Markdown.
    pub content: String,
    /// Tools called while writing it.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Sources it cites.
    pub citations: Vec<SourceRef>,
    /// The model; empty for the analyst.
    pub model_id: String,
    /// Tokens; `None` for the analyst.
    pub usage: Option<Usage>,
    /// Its cost in nano-dollars.
    pub cost_nanos: i64,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When its body was erased under the organisation's retention
    /// setting: `content` is then [`ERASED_CONTENT`] and the tool calls'
    /// arguments and summaries are cleared; the rest is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<DateTime<Utc>>,
}

/// The content of a message whose body was erased under the retention
/// setting.
pub const ERASED_CONTENT: &str = "[erased under the organisation's retention setting]";

impl Message {
    /// This message with its body erased at `at`: the content replaced by
    /// [`ERASED_CONTENT`], each tool call's arguments and result summary
    /// cleared (the tool, id and status stay); citations, model, tokens,
    /// cost and times kept.
    pub fn erased(mut self, at: DateTime<Utc>) -> Self {
        self.content = ERASED_CONTENT.to_owned();
        for call in &mut self.tool_calls {
            call.arguments = Value::Object(serde_json::Map::new());
            call.summary = String::new();
        }
        self.erased_at = Some(at);
        self
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Running.
    Running,
    /// Finished with a result.
    Completed,
    /// Finished without one.
    Failed,
}

/// One execution of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// UUID.
    pub id: Uuid,
    /// Its organisation.
    pub org_id: OrgId,
    /// The kind.
    pub kind: AgentKind,
    /// The model used.
    pub model_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// The input.
    pub input: Value,
    /// The result, once completed.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: String,
    /// Tools called, each once, in order of first use.
    pub tools_used: Vec<Tool>,
    /// Tokens so far.
    pub usage: Usage,
    /// Cost so far, nano-dollars.
    pub cost_nanos: i64,
    /// Who asked.
    pub requested_by: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it ran, once finished.
    pub duration_ms: Option<i64>,
}

/// Tokens of one model in one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUsage {
    /// The model.
    pub model_id: String,
    /// Tokens.
    pub usage: Usage,
    /// Cost, nano-dollars.
    pub cost_nanos: i64,
    /// Model calls.
    pub calls: i64,
}

/// What an analyst decided on personal data in their chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Replace it with the finding's placeholder before it is stored or sent.
    Redact,
    /// Keep it, with a justification.
    Keep,
}

impl PiiAction {
    /// `redact` or `keep`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PiiAction::Redact => "redact",
            PiiAction::Keep => "keep",
        }
    }
}

/// Keeping personal data needs a justification of this many characters.
pub const JUSTIFICATION_CHARS: std::ops::RangeInclusive<usize> = 10..=2_000;
/// At most this many decisions in one request.
pub const MAX_PII_DECISIONS: usize = 500;

/// A decision on one finding of a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiDecision {
    /// The finding's id.
    pub finding_id: String,
    /// Redact or keep.
    pub action: PiiAction,
    /// Why it is kept; empty for a redaction.
    pub justification: String,
}

impl PiiDecision {
    /// Validates a decision from a request; `index` names it in errors.
    pub fn parse(
        index: usize,
        finding_id: &str,
        action: Option<PiiAction>,
        justification: &str,
    ) -> Result<PiiDecision, treven_mesh::ServiceError> {
        use treven_mesh::ServiceError;
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
        })
    }
}

/// Personal data found in a chat message's `content`.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFinding {
    /// Stable id ([`treven_pii::Finding::stable_id`] with an empty scope,
    /// as `DetectPii` gives it), the same on a retry of the same text.
    pub id: String,
    /// What kind of personal data it is.
    pub kind: treven_pii::PiiKind,
    /// Byte offset of its first byte in the message.
    pub start: usize,
    /// Byte offset just past its last byte.
    pub end: usize,
    /// The redaction, e.g. `[EMAIL]`.
    pub placeholder: &'static str,
}
