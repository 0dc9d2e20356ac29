//! PII: the detector behind `DetectPii` (the local detector, plus the
//! Bedrock guardrail when one is configured) and the gate on analysts' chat
//! messages, which behaves as the reports' gate: every finding of the local
//! detector must be decided — redacted (replaced by its placeholder) or kept
//! with a justification — or the message is refused with `PII_DETECTED`
//! before it is stored, used as a tool argument or sent to a model.
//!
//! The gate uses the local detector only: its findings, and so their ids,
//! are the same on every scan of the same text, which a retry with
//! decisions relies on.

use std::collections::{HashMap, HashSet};

use treven_mesh::{ErrorCode, ServiceError};

use super::Agents;
use crate::model::{MessageFinding, PiiAction, PiiDecision};

/// The message after the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct GatedMessage {
    /// The text to store and send: redacted findings replaced.
    pub text: String,
    /// Each finding with the decision taken on it.
    pub decided: Vec<(MessageFinding, PiiDecision)>,
}

/// Why the gate refused a message.
#[derive(Debug)]
pub enum GateError {
    /// Findings without a decision; nothing was stored or sent.
    Undecided(Vec<MessageFinding>),
    /// A bad decision or an unscannable text.
    Service(ServiceError),
}

impl From<ServiceError> for GateError {
    fn from(error: ServiceError) -> Self {
        GateError::Service(error)
    }
}

/// Scans `content`, applies `decisions` (by finding id) and redacts. Fails
/// when a finding is undecided or a decision names no finding of `content`.
pub fn gate_message(content: &str, decisions: &[PiiDecision]) -> Result<GatedMessage, GateError> {
    let by_id: HashMap<&str, (usize, &PiiDecision)> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| (d.finding_id.as_str(), (i, d)))
        .collect();
    if by_id.len() != decisions.len() {
        return Err(
            ServiceError::invalid_field("pii_decisions", "decides the same finding twice").into(),
        );
    }
    let found = treven_pii::detect(content)
        .map_err(|e| ServiceError::invalid_field("content", format!("cannot be scanned: {e}")))?;
    let mut decided = Vec::new();
    let mut undecided = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    let mut actions = Vec::with_capacity(found.len());
    for f in &found {
        let finding = MessageFinding {
            id: f.stable_id(""),
            kind: f.kind,
            start: f.start,
            end: f.end,
            placeholder: f.placeholder,
        };
        match by_id.get(finding.id.as_str()) {
            Some((_, decision)) => {
                used.insert(decision.finding_id.as_str());
                actions.push(decision.action);
                decided.push((finding, (*decision).clone()));
            }
            None => {
                actions.push(PiiAction::Keep);
                undecided.push(finding);
            }
        }
    }
    if !undecided.is_empty() {
        return Err(GateError::Undecided(undecided));
    }
    if let Some(index) = by_id
        .values()
        .filter(|(_, d)| !used.contains(d.finding_id.as_str()))
        .map(|(i, _)| *i)
        .min()
    {
        // The decisions answer another text's findings (the text changed
        // since PII_DETECTED listed them): a conflict with what is sent now,
        // not malformed input.
        let field = format!("pii_decisions[{index}].finding_id");
        return Err(ServiceError::new(
            ErrorCode::FailedPrecondition,
            format!("{field} names no finding in this message; decide on the findings it has"),
        )
        .with_violation(field, "names no finding in this message")
        .into());
    }
    let mut next = actions.iter();
    let text = treven_pii::apply_decisions(content, &found, |_| match next.next() {
        Some(PiiAction::Redact) => treven_pii::Decision::Redact,
        _ => treven_pii::Decision::Keep,
    })
    .map_err(ServiceError::internal)?;
    Ok(GatedMessage { text, decided })
}

impl Agents {
    /// Personal data in `text`: the local detector's findings, plus the
    /// guardrail's that overlap none of them when one is configured (a
    /// failed guardrail call is logged and leaves the local findings).
    pub async fn detect_pii(&self, text: &str) -> Result<Vec<treven_pii::Finding>, ServiceError> {
        let local = treven_pii::detect(text)
            .map_err(|e| ServiceError::invalid_field("text", e.to_string()))?;
        let Some(guardrail) = &self.inner.guardrail else {
            return Ok(local);
        };
        match guardrail.findings(text).await {
            Ok(extra) => Ok(crate::guardrail::merge(local, extra)),
            Err(error) => {
                tracing::warn!(error = %error, "guardrail unavailable; local pii findings only");
                Ok(local)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "Victim Jane Smith, jane.smith@example.org, phone 07700 900123";

    fn findings() -> Vec<MessageFinding> {
        match gate_message(MESSAGE, &[]) {
            Err(GateError::Undecided(findings)) => findings,
            other => panic!("findings expected, got {other:?}"),
        }
    }

    fn decide(f: &MessageFinding, action: PiiAction) -> PiiDecision {
        PiiDecision {
            finding_id: f.id.clone(),
            action,
            justification: if action == PiiAction::Keep {
                "named in the public court record".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn undecided_findings_block_and_decisions_redact_or_keep() {
        let found = findings();
        let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["name", "email", "phone"]);
        let all: Vec<PiiDecision> = found.iter().map(|f| decide(f, PiiAction::Redact)).collect();
        let gated = gate_message(MESSAGE, &all).expect("decided");
        assert_eq!(gated.text, "Victim [NAME], [EMAIL], phone [PHONE]");
        assert_eq!(gated.decided.len(), 3);
        let mut mixed = all.clone();
        mixed[0] = decide(&found[0], PiiAction::Keep);
        let gated = gate_message(MESSAGE, &mixed).expect("decided");
        assert_eq!(gated.text, "Victim Jane Smith, [EMAIL], phone [PHONE]");
        // Two of three decided: the third still blocks.
        match gate_message(MESSAGE, &all[..2]) {
            Err(GateError::Undecided(left)) => assert_eq!(left, found[2..].to_vec()),
            other => panic!("undecided expected, got {other:?}"),
        }
    }

    #[test]
    fn stray_and_repeated_decisions_are_refused() {
        let found = findings();
        let mut all: Vec<PiiDecision> =
            found.iter().map(|f| decide(f, PiiAction::Redact)).collect();
        all.push(PiiDecision {
            finding_id: "0".repeat(32),
            ..all[0].clone()
        });
        assert!(matches!(
            gate_message(MESSAGE, &all),
            Err(GateError::Service(e)) if e.violations()[0].field == "pii_decisions[3].finding_id"
        ));
        all[3] = all[0].clone();
        assert!(matches!(
            gate_message(MESSAGE, &all),
            Err(GateError::Service(_))
        ));
        assert!(gate_message("No personal data here.", &[]).is_ok());
    }
}
