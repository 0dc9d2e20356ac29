//! Protobuf ⇄ domain conversions of the agents API: the only place that
//! knows both shapes.

use treven_mesh::ServiceError;
use treven_mesh::wire::{from_timestamp, json_to_struct, timestamp};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::common::v1::{Money, TimeRange, TokenUsage};
use treven_proto::treven::reports::v1 as reports;

use crate::app::GenerateInput;
use crate::generator::{GeneratedSection, ScopeBrief, SectionKey};
use crate::model::{
    AgentKind, Conversation, ConversationContext, MAX_PII_DECISIONS, Message, MessageFinding,
    MessageRole, PiiAction, PiiDecision, Run, RunStatus, Tool, ToolCallRecord, ToolStatus,
};
use crate::provider::Usage;

/// A cited source as protobuf: the KJ contract's conversion.
pub(super) use treven_kj::proto::source_to_pb;

/// Nano-dollars as USD money.
pub fn money(nanos: i64) -> Money {
    Money {
        currency_code: "USD".to_owned(),
        units: nanos / 1_000_000_000,
        nanos: i32::try_from(nanos % 1_000_000_000).unwrap_or_default(),
    }
}

/// Tokens and cost as protobuf.
pub fn usage_to_pb(usage: Usage, cost: i64) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_tokens: usage.cache_read_tokens,
        cache_write_tokens: usage.cache_write_tokens,
        cost: Some(money(cost)),
    }
}

pub(super) fn tool_to_pb(tool: Option<Tool>) -> pb::AgentTool {
    match tool {
        None => pb::AgentTool::Unspecified,
        Some(Tool::SearchSources) => pb::AgentTool::SearchSources,
        Some(Tool::QueryDataset) => pb::AgentTool::QueryDataset,
        Some(Tool::DetectPii) => pb::AgentTool::DetectPii,
        Some(Tool::MakeCitation) => pb::AgentTool::MakeCitation,
        Some(Tool::RateConfidence) => pb::AgentTool::RateConfidence,
        Some(Tool::StoreEvidence) => pb::AgentTool::StoreEvidence,
    }
}

pub(super) fn tool_call_to_pb(call: ToolCallRecord) -> pb::ToolCall {
    pb::ToolCall {
        id: call.id,
        tool: tool_to_pb(call.tool).into(),
        arguments: Some(json_to_struct(&call.arguments)),
        status: match call.status {
            ToolStatus::Running => pb::ToolCallStatus::Running,
            ToolStatus::Succeeded => pb::ToolCallStatus::Succeeded,
            ToolStatus::Failed => pb::ToolCallStatus::Failed,
        }
        .into(),
        summary: call.summary,
    }
}

pub(super) fn conversation_to_pb(c: Conversation) -> pb::Conversation {
    pb::Conversation {
        id: c.id.to_string(),
        org_id: c.org_id.to_string(),
        title: c.title,
        context: Some(pb::ConversationContext {
            country: c.context.country,
            sector: c.context.sector,
            time_range: (c.context.from.is_some() || c.context.to.is_some()).then(|| TimeRange {
                start: c.context.from.map(timestamp),
                end: c.context.to.map(timestamp),
            }),
        }),
        created_by: c.created_by,
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

pub(super) fn message_to_pb(m: Message) -> pb::Message {
    pb::Message {
        id: m.id.to_string(),
        conversation_id: m.conversation_id.to_string(),
        role: match m.role {
            MessageRole::User => pb::MessageRole::User,
            MessageRole::Assistant => pb::MessageRole::Assistant,
            MessageRole::System => pb::MessageRole::System,
        }
        .into(),
        content: m.content,
        tool_calls: m.tool_calls.into_iter().map(tool_call_to_pb).collect(),
        citations: m.citations.iter().map(source_to_pb).collect(),
        usage: m.usage.map(|u| usage_to_pb(u, m.cost_nanos)),
        model_id: m.model_id,
        created_at: Some(timestamp(m.created_at)),
        erased_at: m.erased_at.map(timestamp),
    }
}

pub(super) fn kind_to_pb(kind: AgentKind) -> pb::AgentKind {
    match kind {
        AgentKind::Osint => pb::AgentKind::Osint,
        AgentKind::Generator => pb::AgentKind::Generator,
        AgentKind::Summarise => pb::AgentKind::Summarise,
        AgentKind::Social => pb::AgentKind::Social,
        AgentKind::Pii => pb::AgentKind::Pii,
    }
}

/// The agent kind of a request field.
pub fn kind_from_pb(raw: i32) -> Result<AgentKind, ServiceError> {
    match pb::AgentKind::try_from(raw) {
        Ok(pb::AgentKind::Osint) => Ok(AgentKind::Osint),
        Ok(pb::AgentKind::Generator) => Ok(AgentKind::Generator),
        Ok(pb::AgentKind::Summarise) => Ok(AgentKind::Summarise),
        Ok(pb::AgentKind::Social) => Ok(AgentKind::Social),
        Ok(pb::AgentKind::Pii) => Ok(AgentKind::Pii),
        Ok(pb::AgentKind::Unspecified) => Err(ServiceError::invalid_field("kind", "is required")),
        Err(_) => Err(ServiceError::invalid_field(
            "kind",
            format!("unknown agent kind {raw}"),
        )),
    }
}

pub(super) fn run_to_pb(run: Run) -> pb::AgentRun {
    pb::AgentRun {
        id: run.id.to_string(),
        org_id: run.org_id.to_string(),
        kind: kind_to_pb(run.kind).into(),
        model_id: run.model_id,
        status: match run.status {
            RunStatus::Running => pb::RunStatus::Running,
            RunStatus::Completed => pb::RunStatus::Completed,
            RunStatus::Failed => pb::RunStatus::Failed,
        }
        .into(),
        input: Some(json_to_struct(&run.input)),
        output: run.output.as_ref().map(json_to_struct),
        error: run.error,
        tools_used: run
            .tools_used
            .into_iter()
            .map(|t| i32::from(tool_to_pb(Some(t))))
            .collect(),
        usage: Some(usage_to_pb(run.usage, run.cost_nanos)),
        requested_by: run.requested_by,
        started_at: Some(timestamp(run.started_at)),
        duration: run.duration_ms.map(|ms| prost_types::Duration {
            seconds: ms / 1000,
            nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or_default(),
        }),
    }
}

/// A generated section as the contract's `GeneratedSection`: its content
/// converted by the KJ contract, the title block set only by its section.
pub fn section_to_pb(section: GeneratedSection) -> pb::GeneratedSection {
    let key = section.section;
    pb::GeneratedSection {
        section: key.as_str().to_owned(),
        content: Some(treven_kj::section_content_to_pb(
            key,
            &section.into_content(),
        )),
    }
}

pub(super) fn scope_from_pb(
    scope: Option<reports::ReportScope>,
) -> Result<ScopeBrief, ServiceError> {
    let scope = scope.ok_or_else(|| ServiceError::invalid_field("scope", "is required"))?;
    let range = scope.time_range.unwrap_or_default();
    let exploitation = match reports::ExploitationType::try_from(scope.exploitation_type) {
        Ok(reports::ExploitationType::Labour) => "labour",
        Ok(reports::ExploitationType::Sexual) => "sexual",
        Ok(reports::ExploitationType::Online) => "online",
        Ok(reports::ExploitationType::Criminal) => "criminal",
        Ok(reports::ExploitationType::Mixed) => "mixed",
        Ok(reports::ExploitationType::Other | reports::ExploitationType::Unspecified) => "",
        Err(_) => {
            return Err(ServiceError::invalid_field(
                "scope.exploitation_type",
                "unknown type",
            ));
        }
    };
    let client_type =
        match treven_proto::treven::tenants::v1::OrganisationKind::try_from(scope.client_type) {
            Ok(treven_proto::treven::tenants::v1::OrganisationKind::Fi) => "fi",
            Ok(treven_proto::treven::tenants::v1::OrganisationKind::Ngo) => "ngo",
            Ok(treven_proto::treven::tenants::v1::OrganisationKind::Le) => "le",
            _ => "",
        };
    if scope.country.is_empty() && scope.region.is_empty() {
        return Err(ServiceError::invalid_field(
            "scope.country",
            "a country or region is required",
        ));
    }
    Ok(ScopeBrief {
        country: scope.country,
        region: scope.region,
        sector: scope.sector,
        exploitation: exploitation.to_owned(),
        from: range
            .start
            .as_ref()
            .map(|t| from_timestamp("scope.time_range.start", t))
            .transpose()?,
        to: range
            .end
            .as_ref()
            .map(|t| from_timestamp("scope.time_range.end", t))
            .transpose()?,
        client_type: client_type.to_owned(),
    })
}

pub(super) fn generate_input(
    request: pb::GenerateReportRequest,
) -> Result<GenerateInput, ServiceError> {
    let report_id = uuid::Uuid::parse_str(&request.report_id)
        .map_err(|_| ServiceError::invalid_field("report_id", "must be a UUID"))?;
    let sections = request
        .sections
        .iter()
        .map(|raw| {
            SectionKey::parse(raw).ok_or_else(|| {
                ServiceError::invalid_field("sections", format!("unknown section {raw:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (existing, issue) = match &request.current {
        Some(current) => (
            current.citations.iter().map(|c| c.id.clone()).collect(),
            current
                .title_block
                .as_ref()
                .map(|t| t.issue_number)
                .unwrap_or(0),
        ),
        None => (Vec::new(), 0),
    };
    Ok(GenerateInput {
        report_id,
        scope: scope_from_pb(request.scope)?,
        sections,
        existing_citation_ids: existing,
        // A rewrite keeps the issue number of the draft.
        issue_number: (issue - 1).max(0),
        instructions: request.instructions,
        document_ids: request.document_ids,
    })
}

/// A conversation's research context from protobuf, trimmed; a bad time
/// names its field.
pub(super) fn context_from_pb(
    context: pb::ConversationContext,
) -> Result<ConversationContext, ServiceError> {
    let range = context.time_range.unwrap_or_default();
    Ok(ConversationContext {
        country: context.country.trim().to_owned(),
        sector: context.sector.trim().to_owned(),
        from: range
            .start
            .as_ref()
            .map(|t| from_timestamp("context.time_range.start", t))
            .transpose()?,
        to: range
            .end
            .as_ref()
            .map(|t| from_timestamp("context.time_range.end", t))
            .transpose()?,
    })
}

/// The decisions of a request, validated (at most
/// [`crate::model::MAX_PII_DECISIONS`]).
pub(super) fn decisions_from_pb(
    raw: &[reports::PiiDecision],
) -> Result<Vec<PiiDecision>, ServiceError> {
    if raw.len() > MAX_PII_DECISIONS {
        return Err(ServiceError::invalid_field(
            "pii_decisions",
            format!("at most {MAX_PII_DECISIONS} decisions"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, d)| {
            let action = match reports::PiiAction::try_from(d.action) {
                Ok(reports::PiiAction::Redact) => Some(PiiAction::Redact),
                Ok(reports::PiiAction::Keep) => Some(PiiAction::Keep),
                _ => None,
            };
            PiiDecision::parse(i, &d.finding_id, action, &d.justification)
        })
        .collect()
}

/// A finding of a chat message as protobuf (`field_path` `content`).
pub(super) fn message_finding_to_pb(f: &MessageFinding) -> reports::PiiFinding {
    reports::PiiFinding {
        id: f.id.clone(),
        r#type: f.kind.proto_value(),
        section: String::new(),
        field_path: "content".to_owned(),
        start: i64::try_from(f.start).unwrap_or_default(),
        end: i64::try_from(f.end).unwrap_or_default(),
        placeholder: f.placeholder.to_owned(),
    }
}

/// The status of a message refused for personal data: PII_DETECTED with
/// the findings in a `treven.reports.v1.PiiDetected` detail next to the
/// `ErrorInfo`, as the reports service answers (the gateway shows it as 422
/// with `details.piiDetected.findings`).
pub(super) fn pii_detected_status(findings: &[MessageFinding]) -> tonic::Status {
    use prost::Message as _;
    let code = treven_mesh::ErrorCode::PiiDetected;
    let info = tonic_types::pb::ErrorInfo {
        reason: code.as_str().to_owned(),
        domain: treven_mesh::error::ERROR_DOMAIN.to_owned(),
        metadata: std::collections::HashMap::new(),
    };
    let detected = reports::PiiDetected {
        findings: findings.iter().map(message_finding_to_pb).collect(),
    };
    let message = format!(
        "personal data found ({} findings): redact each or keep it with a justification",
        detected.findings.len()
    );
    let status = tonic_types::pb::Status {
        code: code.grpc_code() as i32,
        message: message.clone(),
        details: vec![
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: info.encode_to_vec(),
            },
            prost_types::Any {
                type_url: "type.googleapis.com/treven.reports.v1.PiiDetected".into(),
                value: detected.encode_to_vec(),
            },
        ],
    };
    tonic::Status::with_details(code.grpc_code(), message, status.encode_to_vec().into())
}
