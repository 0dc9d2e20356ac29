//! Redaction of model output with the local `treven-pii` detector: whole
//! texts ([`redact_text`]), JSON values such as tool call arguments
//! ([`redact_json`]) and streamed text ([`StreamRedactor`]). Every finding
//! is replaced by its placeholder (`[EMAIL]`, `[PHONE]`, `[NAME]`…); no
//! analyst has seen model output yet, so nothing is kept. What was redacted
//! is counted per kind ([`Redactions`]) for the audit log, never quoted.
//!
//! The detector fails only on input over [`treven_pii::MAX_INPUT_BYTES`];
//! such a text is replaced whole by [`UNSCANNABLE`] rather than passed on
//! unscanned.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use treven_pii::{Finding, PiiKind};

/// What replaces a text too large to scan.
pub const UNSCANNABLE: &str = "[REDACTED]";

/// How far behind the end of the text received a [`StreamRedactor`] holds
/// its output, in bytes: longer than any finding that spans whitespace (a
/// phone number written in groups, an IBAN in blocks of four, a cued name of
/// four words, an address line) plus the detector's look-back for cues, so
/// nothing it has let out can turn out to be part of a finding once more
/// text arrives. Findings without whitespace (an e-mail address) are never
/// cut, however long, because output only ends after whitespace.
pub const STREAM_HOLDBACK_BYTES: usize = 96;

/// How much already-released text a [`StreamRedactor`] rescans with the new
/// text, for the cues before a finding ("Victim", "DOB", "passport no.").
const STREAM_CONTEXT_BYTES: usize = 128;

/// How many findings of each kind were redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactions(BTreeMap<PiiKind, u32>);

impl Redactions {
    /// Counts `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut counts = Redactions::default();
        for finding in findings {
            counts.add_one(finding.kind);
        }
        counts
    }

    /// Counts one redaction of `kind`.
    pub fn add_one(&mut self, kind: PiiKind) {
        *self.0.entry(kind).or_default() += 1;
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Redactions) {
        for (kind, count) in &other.0 {
            *self.0.entry(*kind).or_default() += count;
        }
    }

    /// Whether nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All findings redacted.
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }

    /// How many of `kind` were redacted.
    pub fn count(&self, kind: PiiKind) -> u32 {
        self.0.get(&kind).copied().unwrap_or_default()
    }

    /// `{"email": 1, "phone": 2}`: kinds and counts, for an audit entry.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(kind, count)| (kind.as_str().to_owned(), json!(count)))
                .collect(),
        )
    }
}

/// `text` with every finding replaced by its placeholder, and the counts.
pub fn redact_text(text: &str) -> (String, Redactions) {
    let Ok(findings) = treven_pii::detect(text) else {
        tracing::warn!(bytes = text.len(), "text too large to scan; replaced whole");
        return (UNSCANNABLE.to_owned(), Redactions::default());
    };
    if findings.is_empty() {
        return (text.to_owned(), Redactions::default());
    }
    match treven_pii::redact(text, &findings) {
        Ok(redacted) => (redacted, Redactions::of(&findings)),
        // Findings are made on this very text: unreachable, but closed.
        Err(_) => (UNSCANNABLE.to_owned(), Redactions::of(&findings)),
    }
}

/// One finding redacted automatically from model output, for the audit log
/// (its id and kind, never its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRedaction {
    /// The finding's stable id ([`Finding::stable_id`] in its field).
    pub finding_id: String,
    /// What it was.
    pub kind: PiiKind,
    /// The output field it was in, e.g. `post`.
    pub field_path: &'static str,
}

/// `text` (the `field_path` of an output) with every finding replaced by
/// its placeholder, the counts, and each finding as an [`AutoRedaction`].
pub fn redact_field(
    text: &str,
    field_path: &'static str,
) -> (String, Redactions, Vec<AutoRedaction>) {
    let Ok(findings) = treven_pii::detect(text) else {
        tracing::warn!(bytes = text.len(), "text too large to scan; replaced whole");
        return (UNSCANNABLE.to_owned(), Redactions::default(), Vec::new());
    };
    let (redacted, counts) = redact_text(text);
    let decided = findings
        .iter()
        .map(|f| AutoRedaction {
            finding_id: f.stable_id(field_path),
            kind: f.kind,
            field_path,
        })
        .collect();
    (redacted, counts, decided)
}

/// Redacts every string in `value` (object keys are left: they are the
/// tool's schema, not content); returns the counts.
pub fn redact_json(value: &mut Value) -> Redactions {
    let mut counts = Redactions::default();
    redact_json_into(value, &mut counts);
    counts
}

fn redact_json_into(value: &mut Value, counts: &mut Redactions) {
    match value {
        Value::String(text) => {
            let (redacted, found) = redact_text(text);
            if !found.is_empty() || redacted != *text {
                *text = redacted;
                counts.add(&found);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json_into(v, counts)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|v| redact_json_into(v, counts)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Redacts text that arrives in pieces (a model's deltas) and lets it out
/// as soon as it is safe: up to the last whitespace at least
/// [`STREAM_HOLDBACK_BYTES`] before the end of what has arrived, never
/// inside a finding. What it lets out, concatenated, is the text with every
/// finding redacted; [`StreamRedactor::finish`] lets out the rest.
#[derive(Debug, Default)]
pub struct StreamRedactor {
    /// Everything received.
    raw: String,
    /// How much of `raw` has been let out (redacted).
    released: usize,
    /// Everything let out.
    out: String,
    redactions: Redactions,
}

impl StreamRedactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `delta`; returns the redacted text now safe to let out, if any.
    pub fn push(&mut self, delta: &str) -> Option<String> {
        self.raw.push_str(delta);
        if self.raw.len() - self.released <= STREAM_HOLDBACK_BYTES {
            return None;
        }
        let limit = self
            .raw
            .floor_char_boundary(self.raw.len() - STREAM_HOLDBACK_BYTES);
        let (window, findings) = self.scan();
        // The last cut after whitespace, up to `limit`, outside findings.
        let cut = self.raw[self.released..limit]
            .char_indices()
            .filter(|(_, c)| c.is_whitespace())
            .map(|(i, c)| self.released + i + c.len_utf8())
            .rev()
            .find(|&cut| {
                !findings
                    .iter()
                    .any(|f| window + f.start < cut && cut < window + f.end)
            })?;
        Some(self.release(cut, window, &findings))
    }

    /// Lets out everything not yet let out (the text is complete, or will
    /// not go on: a tool call or the end of the reply), redacted.
    pub fn finish(&mut self) -> Option<String> {
        if self.released == self.raw.len() {
            return None;
        }
        let (window, findings) = self.scan();
        let end = self.raw.len();
        Some(self.release(end, window, &findings))
    }

    /// Everything let out so far.
    pub fn released_text(&self) -> &str {
        &self.out
    }

    /// What was redacted so far.
    pub fn redactions(&self) -> &Redactions {
        &self.redactions
    }

    /// The findings of the unreleased text with some context before it:
    /// the window's start in `raw` and the findings, relative to it. A text
    /// too large to scan has one finding over all of it.
    fn scan(&self) -> (usize, Vec<Finding>) {
        let window = self
            .raw
            .floor_char_boundary(self.released.saturating_sub(STREAM_CONTEXT_BYTES));
        let text = &self.raw[window..];
        match treven_pii::detect(text) {
            Ok(findings) => (window, findings),
            Err(_) => {
                let start = self.released - window;
                (
                    window,
                    vec![Finding {
                        placeholder: UNSCANNABLE,
                        ..Finding::new(PiiKind::Name, text, start..text.len(), 0.0)
                    }],
                )
            }
        }
    }

    /// Lets out `raw[released..cut]` with the findings overlapping it
    /// redacted (a finding reaching back into text already let out, which
    /// the hold-back rules out, has its unreleased part redacted).
    fn release(&mut self, cut: usize, window: usize, findings: &[Finding]) -> String {
        let chunk = &self.raw[self.released..cut];
        let mut clipped = Vec::new();
        for f in findings {
            let start = (window + f.start).max(self.released);
            let end = (window + f.end).min(cut);
            if start < end {
                let mut finding = Finding::new(
                    f.kind,
                    chunk,
                    start - self.released..end - self.released,
                    0.0,
                );
                finding.placeholder = f.placeholder;
                clipped.push(finding);
            }
        }
        let redacted = match treven_pii::redact(chunk, &clipped) {
            Ok(redacted) => redacted,
            Err(_) => UNSCANNABLE.to_owned(),
        };
        for f in &clipped {
            if f.placeholder != UNSCANNABLE {
                self.redactions.add_one(f.kind);
            }
        }
        self.released = cut;
        self.out.push_str(&redacted);
        redacted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "The case file names the victim Jane Smith. You can reach the caseworker at jane.smith@example.org or on 07700 900123 during office hours, and the rest of this answer is ordinary prose about farm labour in Lincolnshire.";

    fn streamed(deltas: &[&str]) -> (Vec<String>, String, Redactions) {
        let mut redactor = StreamRedactor::new();
        let mut out: Vec<String> = deltas.iter().filter_map(|d| redactor.push(d)).collect();
        out.extend(redactor.finish());
        let text = out.concat();
        assert_eq!(text, redactor.released_text());
        let counts = redactor.redactions().clone();
        (out, text, counts)
    }

    #[test]
    fn a_whole_text_is_redacted_and_counted() {
        let (text, counts) = redact_text(REPLY);
        assert!(!text.contains("jane.smith@example.org"), "{text}");
        assert!(!text.contains("900123"), "{text}");
        assert!(
            text.contains("[EMAIL]") && text.contains("[PHONE]"),
            "{text}"
        );
        assert_eq!(counts.count(PiiKind::Email), 1);
        assert_eq!(counts.count(PiiKind::Phone), 1);
        assert_eq!(counts.to_json()["email"], 1);
    }

    #[test]
    fn every_split_of_a_stream_releases_the_whole_redaction() {
        let (whole, counts) = redact_text(REPLY);
        // One character, then a few bytes, then words at a time: the
        // release is the same, and no released piece quotes personal data.
        for size in [1, 3, 7, 16, 40] {
            let chars: Vec<char> = REPLY.chars().collect();
            let deltas: Vec<String> = chars
                .chunks(size)
                .map(|c| c.iter().collect::<String>())
                .collect();
            let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
            let (pieces, text, streamed_counts) = streamed(&deltas);
            assert_eq!(text, whole, "split into {size}-char deltas");
            assert_eq!(streamed_counts, counts);
            assert!(pieces.len() > 1, "released as it arrives, not at the end");
            for piece in &pieces {
                for secret in [
                    "jane.smith",
                    "example.org",
                    "07700",
                    "900123",
                    "Jane",
                    "Smith",
                ] {
                    assert!(!piece.contains(secret), "{piece:?} leaks {secret}");
                }
            }
        }
    }

    #[test]
    fn text_shorter_than_the_holdback_waits_for_the_end() {
        let mut redactor = StreamRedactor::new();
        assert_eq!(redactor.push("Call 07700 "), None);
        assert_eq!(redactor.push("900123."), None);
        assert_eq!(redactor.finish().as_deref(), Some("Call [PHONE]."));
        assert_eq!(redactor.finish(), None);
    }

    #[test]
    fn a_field_is_redacted_with_one_stable_id_per_finding() {
        let (text, counts, decided) = redact_field(REPLY, "post");
        assert_eq!(text, redact_text(REPLY).0);
        assert_eq!(decided.len() as u32, counts.total());
        let kinds: Vec<PiiKind> = decided.iter().map(|d| d.kind).collect();
        assert!(
            kinds.contains(&PiiKind::Email) && kinds.contains(&PiiKind::Phone),
            "{kinds:?}"
        );
        assert!(
            decided
                .iter()
                .all(|d| d.field_path == "post" && d.finding_id.len() == 32)
        );
        // The same text gives the same ids; another field, others.
        assert_eq!(redact_field(REPLY, "post").2, decided);
        assert_ne!(
            redact_field(REPLY, "text").2[0].finding_id,
            decided[0].finding_id
        );
        assert!(redact_field("Nothing personal.", "post").2.is_empty());
    }

    #[test]
    fn json_strings_are_redacted_in_place() {
        let mut arguments = json!({
            "text": "trafficking of Victim Jane Smith, jane.smith@example.org",
            "source_ids": ["a", "b"],
            "nested": {"note": "phone 07700 900123"},
            "limit": 3,
        });
        let counts = redact_json(&mut arguments);
        assert_eq!(counts.total(), 3, "{arguments}");
        let text = arguments.to_string();
        for secret in ["Jane Smith", "jane.smith@example.org", "07700 900123"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(arguments["source_ids"], json!(["a", "b"]));
        assert_eq!(arguments["limit"], 3);
    }
}
