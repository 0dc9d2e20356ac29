//! The tools agents may call. Calls to the documents service (through
//! [`crate::clients::Documents`]) forward the caller's mesh context, so a
//! tool can only reach the caller's organisation.
//!
//! A tool's result goes back to the model only through
//! [`ToolBox::screen_result`]: redacted by the local detector, then, with a
//! guardrail configured, passed through `ApplyGuardrail` (masked where it
//! masks, withheld where it blocks or cannot be reached).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use treven_mesh::MeshContext;
use treven_proto::treven::documents::v1 as docs;

use aws_sdk_bedrockruntime::types::GuardrailContentSource;

use crate::clients::Documents;
use crate::generator::{SourceBrief, SourceRef};
use crate::guardrail::{Guardrail, Screened};
use crate::model::Tool;
use crate::provider::ToolSpec;
use crate::redaction::{Redactions, redact_json};

/// The model-facing spec of `tool`.
pub fn spec(tool: Tool) -> ToolSpec {
    let (description, schema) = match tool {
        Tool::SearchSources => (
            "Search the organisation's trusted sources by words, country and sector; returns sources with their ids, labels and trust scores.",
            json!({"type": "object", "properties": {"text": {"type": "string"}, "country": {"type": "string"}, "sector": {"type": "string"}}, "required": ["text"]}),
        ),
        Tool::QueryDataset => (
            "Find the organisation's internal datasets matching words; returns dataset sources and their citation labels.",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        ),
        Tool::DetectPii => (
            "Find personal data in a text; returns each finding's type, byte range and placeholder.",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        ),
        Tool::MakeCitation => (
            "Cite a source found with search_sources or query_dataset for a claim; returns the citation label.",
            json!({"type": "object", "properties": {"source_id": {"type": "string"}, "claim": {"type": "string"}}, "required": ["source_id", "claim"]}),
        ),
        Tool::RateConfidence => (
            "Rate the confidence of a judgement from the sources behind it: high, medium or low.",
            json!({"type": "object", "properties": {"claim": {"type": "string"}, "source_ids": {"type": "array", "items": {"type": "string"}}}, "required": ["claim", "source_ids"]}),
        ),
        Tool::StoreEvidence => (
            "Record the sources behind a report version as its evidence.",
            json!({"type": "object", "properties": {"report_id": {"type": "string"}, "version": {"type": "integer"}, "source_ids": {"type": "array", "items": {"type": "string"}}}, "required": ["report_id", "version", "source_ids"]}),
        ),
    };
    ToolSpec {
        name: tool.name(),
        description,
        schema,
    }
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Sent back to the model.
    pub result: Value,
    /// A short line for the analyst.
    pub summary: String,
    /// A citation the call made.
    pub citation: Option<SourceRef>,
}

/// What one agent loop's tools share: the caller, the research context and
/// the sources seen so far (citations may only name those).
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// Who the tools act for: the caller's verified context (calls to
    /// the documents service carry a token minted for it).
    pub context: MeshContext,
    /// Country filter, or empty.
    pub country: String,
    /// Sector filter, or empty.
    pub sector: String,
    seen: Arc<Mutex<HashMap<String, SourceBrief>>>,
}

impl ToolContext {
    /// Tools acting for `context`.
    pub fn new(context: MeshContext, country: String, sector: String) -> Self {
        Self {
            context,
            country,
            sector,
            seen: Arc::default(),
        }
    }

    fn remember(&self, sources: &[SourceBrief]) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for source in sources {
            seen.insert(source.id.clone(), source.clone());
        }
    }

    fn seen(&self, id: &str) -> Option<SourceBrief> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }
}

fn text_arg<'a>(input: &'a Value, name: &str) -> Result<&'a str, String> {
    input
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("`{name}` is required"))
}

fn listing(sources: &[SourceBrief]) -> Value {
    json!({ "sources": sources.iter().map(|s| json!({
        "source_id": s.id, "label": s.label, "url": s.url, "trust": s.trust, "summary": s.summary,
    })).collect::<Vec<_>>() })
}

/// Runs the tools.
#[derive(Debug, Clone)]
pub struct ToolBox {
    documents: Documents,
    guardrail: Option<Guardrail>,
}

/// What replaces a tool result the guardrail blocked.
pub const WITHHELD_BLOCKED: &str = "the tool result was withheld: the guardrail blocked it";
/// What replaces a tool result the guardrail could not check.
pub const WITHHELD_UNCHECKED: &str =
    "the tool result was withheld: it could not be checked for personal data, retry later";

impl ToolBox {
    /// Tools over the documents service.
    pub fn new(documents: Documents) -> Self {
        Self {
            documents,
            guardrail: None,
        }
    }

    /// The same tools with their results screened by `guardrail`.
    #[must_use]
    pub fn with_guardrail(mut self, guardrail: Option<Guardrail>) -> Self {
        self.guardrail = guardrail;
        self
    }

    /// A tool's `result` as it may go back to the model: every string
    /// redacted by the local detector, then, with a guardrail, the whole
    /// result through `ApplyGuardrail` (source `INPUT`). A result the
    /// guardrail masked goes masked (parsed back as JSON when it still is,
    /// otherwise as `{"text": …}`); one it blocked, or that it could not
    /// check, is replaced by an error for the model. Returns the content,
    /// whether it is an error, and adds what was redacted to `redactions`.
    pub async fn screen_result(
        &self,
        mut result: Value,
        is_error: bool,
        redactions: &mut Redactions,
    ) -> (Value, bool) {
        redactions.add(&redact_json(&mut result));
        let Some(guardrail) = &self.guardrail else {
            return (result, is_error);
        };
        let text = result.to_string();
        match guardrail.screen(&text, GuardrailContentSource::Input).await {
            Ok(Screened::Passed) => (result, is_error),
            Ok(Screened::Masked { text, kinds }) => {
                kinds.into_iter().for_each(|k| redactions.add_one(k));
                tracing::info!("guardrail masked personal data in a tool result");
                let masked =
                    serde_json::from_str(&text).unwrap_or_else(|_| json!({ "text": text }));
                (masked, is_error)
            }
            Ok(Screened::Blocked { kinds }) => {
                kinds.into_iter().for_each(|k| redactions.add_one(k));
                tracing::info!("guardrail blocked a tool result");
                (json!({ "error": WITHHELD_BLOCKED }), true)
            }
            Err(error) => {
                tracing::warn!(error = %error, "guardrail unavailable; tool result withheld");
                (json!({ "error": WITHHELD_UNCHECKED }), true)
            }
        }
    }

    /// Calls `tool` with `input`; an `Err` is a message for the model.
    pub async fn call(
        &self,
        ctx: &ToolContext,
        tool: Tool,
        input: &Value,
    ) -> Result<ToolOutput, String> {
        match tool {
            Tool::SearchSources | Tool::QueryDataset => {
                let text = text_arg(input, "text")?
                    .chars()
                    .take(200)
                    .collect::<String>();
                let pick = |name: &str, fallback: &str| {
                    input
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or(fallback)
                        .to_owned()
                };
                let mut sources = self
                    .documents
                    .search(
                        &ctx.context,
                        docs::SearchSourcesRequest {
                            limit: 8,
                            text,
                            country: pick("country", &ctx.country),
                            sector: pick("sector", &ctx.sector),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if tool == Tool::QueryDataset {
                    sources.retain(|s| s.url.is_empty());
                }
                ctx.remember(&sources);
                Ok(ToolOutput {
                    summary: format!("found {} source(s)", sources.len()),
                    result: listing(&sources),
                    citation: None,
                })
            }
            Tool::DetectPii => {
                let text = text_arg(input, "text")?;
                let findings = treven_pii::detect(text).map_err(|e| e.to_string())?;
                Ok(ToolOutput {
                    summary: format!("{} finding(s)", findings.len()),
                    result: json!({ "findings": findings.iter().map(|f| json!({
                        "type": f.kind.as_str(), "start": f.start, "end": f.end, "placeholder": f.placeholder,
                    })).collect::<Vec<_>>() }),
                    citation: None,
                })
            }
            Tool::MakeCitation => {
                let id = text_arg(input, "source_id")?;
                let claim = text_arg(input, "claim")?;
                let source = ctx
                    .seen(id)
                    .ok_or_else(|| "unknown source_id: search for sources first".to_owned())?;
                let citation = SourceRef {
                    source_id: source.id.clone(),
                    label: source.label.clone(),
                    url: source.url.clone(),
                };
                Ok(ToolOutput {
                    summary: format!("cited {}", source.label),
                    result: json!({ "label": source.label, "url": source.url, "claim": claim }),
                    citation: Some(citation),
                })
            }
            Tool::RateConfidence => {
                text_arg(input, "claim")?;
                let trusts: Vec<i32> = input
                    .get("source_ids")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|id| ctx.seen(id))
                    .map(|s| s.trust)
                    .collect();
                let (confidence, reason) = rate(&trusts);
                Ok(ToolOutput {
                    summary: format!("{confidence} confidence"),
                    result: json!({ "confidence": confidence, "reason": reason }),
                    citation: None,
                })
            }
            Tool::StoreEvidence => {
                let report_id = text_arg(input, "report_id")?.to_owned();
                let version = input
                    .get("version")
                    .and_then(Value::as_i64)
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| "`version` is required".to_owned())?;
                let source_ids: Vec<String> = input
                    .get("source_ids")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                let count = self
                    .documents
                    .store_evidence(
                        &ctx.context,
                        docs::StoreEvidenceRequest {
                            report_id,
                            version,
                            source_ids,
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ToolOutput {
                    summary: format!("stored {count} source(s) as evidence"),
                    result: json!({ "source_count": count }),
                    citation: None,
                })
            }
        }
    }
}

/// Confidence from the trust scores of the sources behind a claim: high
/// with two or more sources averaging 70+, medium with one source of 50+
/// or several weaker ones, otherwise low.
pub fn rate(trusts: &[i32]) -> (&'static str, &'static str) {
    let n = i32::try_from(trusts.len()).unwrap_or(i32::MAX);
    let average = if n == 0 {
        0
    } else {
        trusts.iter().sum::<i32>() / n
    };
    if n >= 2 && average >= 70 {
        ("high", "corroborated by several high-trust sources")
    } else if (n >= 1 && average >= 50) || n >= 3 {
        ("medium", "supported by credible but limited sourcing")
    } else {
        ("low", "rests on weak or no known sources")
    }
}
