//! The PII gate: every save and export scans the text it would store or
//! hand out with the shared `treven-pii` detector. Each finding must be
//! decided — redacted (replaced by its placeholder) or kept with a written
//! justification — or the write is blocked with `PII_DETECTED`.

use std::collections::{HashMap, HashSet};

use treven_mesh::{ErrorCode, ServiceError};

use crate::model::{Content, PiiAction, PiiDecision, PiiFinding, Section};

/// A decision applied to a finding, for the version record and the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The finding.
    pub finding: PiiFinding,
    /// What was done.
    pub decision: PiiDecision,
}

/// The gate's answer.
#[derive(Debug)]
pub enum GateError {
    /// Findings without a decision; nothing was changed.
    Undecided(Vec<PiiFinding>),
    /// A bad request or detector failure.
    Service(ServiceError),
}

impl From<ServiceError> for GateError {
    fn from(error: ServiceError) -> Self {
        GateError::Service(error)
    }
}

/// Scans `sections` of `content`, applies `decisions` (by finding id) and
/// the ids in `already_kept` (kept on an earlier save), and redacts in
/// place. Fails without touching `content` when a finding is undecided or a
/// decision names no finding.
pub fn gate(
    content: &mut Content,
    sections: &[Section],
    decisions: &[PiiDecision],
    already_kept: &HashSet<String>,
) -> Result<Vec<Decided>, GateError> {
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
    let mut scratch = content.clone();
    let mut decided = Vec::new();
    let mut undecided = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    for &section in sections {
        for (path, text) in scratch.text_fields_mut(section) {
            let findings = treven_pii::detect(text).map_err(|e| {
                ServiceError::invalid_field(path.clone(), format!("cannot be scanned: {e}"))
            })?;
            if findings.is_empty() {
                continue;
            }
            let scope = format!("{section}/{path}");
            let first_decided = decided.len();
            let mut actions = Vec::with_capacity(findings.len());
            for found in &findings {
                let id = found.stable_id(&scope);
                let finding = PiiFinding {
                    id: id.clone(),
                    kind: found.kind,
                    section: section.as_str().to_owned(),
                    field_path: path.clone(),
                    start: found.start,
                    end: found.end,
                    placeholder: found.placeholder.to_owned(),
                };
                match by_id.get(id.as_str()) {
                    Some((_, decision)) => {
                        used.insert(decision.finding_id.as_str());
                        actions.push(decision.action);
                        decided.push(Decided {
                            finding,
                            decision: (*decision).clone(),
                        });
                    }
                    None if already_kept.contains(&id) => actions.push(PiiAction::Keep),
                    None => {
                        actions.push(PiiAction::Keep);
                        undecided.push(finding);
                    }
                }
            }
            let mut next = actions.iter();
            let redacted = treven_pii::apply_decisions(text, &findings, |_| match next.next() {
                Some(PiiAction::Redact) => treven_pii::Decision::Redact,
                _ => treven_pii::Decision::Keep,
            })
            .map_err(ServiceError::internal)?;
            // Kept findings move when others before them are redacted: note
            // their ids in the saved text.
            let kept_here: Vec<usize> = (first_decided..decided.len())
                .filter(|&i| decided[i].decision.action == PiiAction::Keep)
                .collect();
            if !kept_here.is_empty() {
                let mut after = treven_pii::detect(&redacted).map_err(ServiceError::internal)?;
                for i in kept_here {
                    let original = &findings
                        .iter()
                        .find(|f| f.stable_id(&scope) == decided[i].finding.id)
                        .map(|f| (f.kind, f.text.clone()));
                    if let Some((kind, matched)) = original
                        && let Some(pos) = after
                            .iter()
                            .position(|f| f.kind == *kind && &f.text == matched)
                    {
                        let moved = after.remove(pos);
                        decided[i].decision.saved_finding_id = moved.stable_id(&scope);
                    }
                }
            }
            *text = redacted;
        }
    }
    if !undecided.is_empty() {
        return Err(GateError::Undecided(undecided));
    }
    if let Some((index, _)) = by_id
        .iter()
        .filter(|(id, _)| !used.contains(*id))
        .map(|(_, (i, d))| (*i, d))
        .min_by_key(|(i, _)| *i)
    {
        // The decisions answer another text's findings (the text changed
        // since PII_DETECTED listed them): a conflict with what is sent now,
        // not malformed input.
        let field = format!("pii_decisions[{index}].finding_id");
        return Err(ServiceError::new(
            ErrorCode::FailedPrecondition,
            format!("{field} names no finding in this content; decide on the findings it has"),
        )
        .with_violation(field, "names no finding in this content")
        .into());
    }
    *content = scratch;
    Ok(decided)
}

/// Redacts every finding in `section` (for generated text, which no analyst
/// has seen yet); returns what was redacted.
pub fn redact_all(content: &mut Content, section: Section) -> Result<Vec<Decided>, ServiceError> {
    let findings = match gate(content, &[section], &[], &HashSet::new()) {
        Ok(decided) => return Ok(decided),
        Err(GateError::Service(error)) => return Err(error),
        Err(GateError::Undecided(findings)) => findings,
    };
    let decisions: Vec<PiiDecision> = findings
        .iter()
        .map(|f| PiiDecision {
            finding_id: f.id.clone(),
            action: PiiAction::Redact,
            justification: String::new(),
            saved_finding_id: String::new(),
        })
        .collect();
    match gate(content, &[section], &decisions, &HashSet::new()) {
        Ok(decided) => Ok(decided),
        Err(GateError::Service(error)) => Err(error),
        Err(GateError::Undecided(_)) => Err(ServiceError::internal(anyhow::anyhow!(
            "redaction left undecided findings"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> Content {
        Content {
            recruitment: "Recruiters used a.popescu@example.com to reach workers [c1].".into(),
            ..Content::default()
        }
    }

    #[test]
    fn an_undecided_finding_blocks_and_changes_nothing() {
        let mut c = content();
        let before = c.clone();
        match gate(&mut c, &[Section::Recruitment], &[], &HashSet::new()) {
            Err(GateError::Undecided(findings)) => {
                assert_eq!(findings.len(), 1);
                assert_eq!(findings[0].field_path, "recruitment");
                assert_eq!(findings[0].placeholder, "[EMAIL]");
            }
            other => panic!("expected findings, got {other:?}"),
        }
        assert_eq!(c, before);
    }

    #[test]
    fn redaction_and_keep_unblock() {
        let mut c = content();
        let Err(GateError::Undecided(findings)) =
            gate(&mut c, &[Section::Recruitment], &[], &HashSet::new())
        else {
            panic!("findings expected")
        };
        let redact = PiiDecision {
            finding_id: findings[0].id.clone(),
            action: PiiAction::Redact,
            justification: String::new(),
            saved_finding_id: String::new(),
        };
        let mut redacted = c.clone();
        let decided = gate(
            &mut redacted,
            &[Section::Recruitment],
            std::slice::from_ref(&redact),
            &HashSet::new(),
        )
        .expect("decided");
        assert_eq!(decided.len(), 1);
        assert!(redacted.recruitment.contains("[EMAIL]"));
        let mut kept = c.clone();
        let already: HashSet<String> = [findings[0].id.clone()].into();
        gate(&mut kept, &[Section::Recruitment], &[], &already).expect("kept");
        assert_eq!(kept, c);
        let stray = PiiDecision {
            finding_id: "0".repeat(32),
            ..redact
        };
        assert!(matches!(
            gate(&mut kept, &[Section::Recruitment], &[stray], &already),
            Err(GateError::Service(_))
        ));
    }
}
