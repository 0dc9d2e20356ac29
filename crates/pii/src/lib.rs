//! PII detector for Treven: finds personal data in text before it is
//! stored, shown to another user, exported or posted, and redacts it.
//!
//! Detection is rule-based and local (no network, no model): regexes
//! compiled once, checksums (IBAN mod-97, Luhn, NHS mod-11, HMRC NI
//! prefixes) and context cues ("DOB", "passport", "Mr", "victim"…). Each
//! [`Finding`] has a [`PiiKind`] that maps 1:1 onto
//! `treven.reports.v1.PiiType`, a byte range into the UTF-8 input, the
//! matched text, a confidence and the suggested placeholder.
//!
//! ```
//! let text = "Contact Mr Adrian Popescu on 07700 900123 or a.popescu@example.com.";
//! let findings = treven_pii::detect(text)?;
//! let redacted = treven_pii::redact(text, &findings)?;
//! assert_eq!(redacted, "Contact Mr [NAME] on [PHONE] or [EMAIL].");
//! # Ok::<(), treven_pii::PiiError>(())
//! ```

mod checksum;
mod kind;
mod lexicon;
mod resolve;
mod rules;
mod text;

use std::ops::Range;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use checksum::{
    iban_length, iban_mod97, iban_valid, luhn_valid, nhs_valid, ni_prefix_valid, ni_valid,
    vin_check_digit_valid,
};
pub use kind::{PiiKind, UnknownKind};

/// The largest input [`detect`] accepts: 1 MiB of UTF-8, the limit of
/// `treven.agents.v1.DetectPiiRequest.text`. Larger input is refused rather
/// than scanned slowly.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Why detection or redaction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("text is {len} bytes; the PII detector accepts at most {max}")]
    InputTooLarge {
        /// The input's length in bytes.
        len: usize,
        /// The limit, [`MAX_INPUT_BYTES`].
        max: usize,
    },
    /// A finding's range is empty, reversed, past the end of the text or not
    /// on char boundaries.
    #[error("finding {start}..{end} is not a valid range of a {len}-byte text")]
    InvalidRange {
        /// The finding's start.
        start: usize,
        /// The finding's end.
        end: usize,
        /// The text's length in bytes.
        len: usize,
    },
    /// The text at a finding's range is not the finding's text: the finding
    /// was made on another version of the text.
    #[error("finding {start}..{end} does not match the text (stale finding?)")]
    StaleFinding {
        /// The finding's start.
        start: usize,
        /// The finding's end.
        end: usize,
    },
}

/// One piece of personal data found in a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What kind of personal data it is.
    pub kind: PiiKind,
    /// Byte offset of the first byte in the UTF-8 text (a char boundary).
    pub start: usize,
    /// Byte offset just past the last byte (a char boundary).
    pub end: usize,
    /// The matched text, `&text[start..end]`.
    pub text: String,
    /// How sure the rule is, in `0.0..=1.0`: about 0.95–0.99 for
    /// checksum-validated numbers and e-mails, 0.75–0.9 for context-cued
    /// names, IDs and patterns, 0.6 for a cued IBAN with a bad checksum.
    pub confidence: f32,
    /// The suggested redaction, [`PiiKind::placeholder`], e.g. `[EMAIL]`.
    pub placeholder: &'static str,
}

impl Finding {
    /// Builds a finding for `text[range]` with the kind's placeholder, e.g.
    /// from another detector's output. A range that does not fit `text`
    /// gives an empty matched text, which [`apply_decisions`] then refuses.
    pub fn new(kind: PiiKind, text: &str, range: Range<usize>, confidence: f32) -> Finding {
        Finding {
            kind,
            start: range.start,
            end: range.end,
            text: text.get(range).unwrap_or_default().to_owned(),
            confidence,
            placeholder: kind.placeholder(),
        }
    }

    /// The byte range `start..end`.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// A stable id for `treven.reports.v1.PiiFinding.id`: 32 lowercase hex
    /// characters of SHA-256 over `scope` (e.g. `"{section}/{field_path}"`,
    /// empty outside a report), the kind, the range and the matched text,
    /// so the same content yields the same id on a retry.
    pub fn stable_id(&self, scope: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            "treven-pii/v1",
            scope,
            self.kind.as_str(),
            &self.start.to_string(),
            &self.end.to_string(),
            &self.text,
        ] {
            h.update(part.len().to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A configured detector. [`detect`] uses the default one.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    min_confidence: f32,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl Detector {
    /// The default minimum confidence: every rule's output passes it.
    pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

    /// A detector reporting every finding with confidence at least
    /// [`Detector::DEFAULT_MIN_CONFIDENCE`].
    pub fn new() -> Detector {
        Detector {
            min_confidence: Self::DEFAULT_MIN_CONFIDENCE,
        }
    }

    /// The same detector reporting only findings with at least this
    /// confidence (clamped to `0.0..=1.0`). Overlaps are resolved before
    /// the filter, so a low-confidence finding never hides another.
    #[must_use]
    pub fn with_min_confidence(mut self, min_confidence: f32) -> Detector {
        self.min_confidence = min_confidence.clamp(0.0, 1.0);
        self
    }

    /// Finds personal data in `text`: non-overlapping findings sorted by
    /// start. Fails only on input over [`MAX_INPUT_BYTES`].
    pub fn detect(&self, text: &str) -> Result<Vec<Finding>, PiiError> {
        if text.len() > MAX_INPUT_BYTES {
            return Err(PiiError::InputTooLarge {
                len: text.len(),
                max: MAX_INPUT_BYTES,
            });
        }
        if text.is_empty() {
            // Nothing to find, and no rule's matcher taken from its pool
            // (#18, row 9: a few microseconds on every empty call).
            return Ok(Vec::new());
        }
        let resolved = resolve::resolve(rules::candidates(text));
        Ok(resolved
            .into_iter()
            .filter(|c| c.confidence >= self.min_confidence)
            .map(|c| Finding::new(c.kind, text, c.start..c.end, c.confidence))
            .collect())
    }
}

/// Finds personal data in `text` with the default [`Detector`].
pub fn detect(text: &str) -> Result<Vec<Finding>, PiiError> {
    Detector::new().detect(text)
}

/// What to do with one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Replace the text with the finding's placeholder
    /// (`PII_ACTION_REDACT`).
    Redact,
    /// Keep the text as it is (`PII_ACTION_KEEP`; the caller records the
    /// analyst's justification).
    Keep,
}

/// Replaces every finding with its placeholder. Equivalent to
/// [`apply_decisions`] deciding [`Decision::Redact`] for all.
pub fn redact(text: &str, findings: &[Finding]) -> Result<String, PiiError> {
    apply_decisions(text, findings, |_| Decision::Redact)
}

/// Applies a decision per finding: findings decided [`Decision::Redact`]
/// are replaced by their placeholder, the others are kept.
///
/// Every finding is first checked against `text` (range in bounds and on
/// char boundaries, same matched text), so findings of another version of
/// the text fail with [`PiiError::StaleFinding`] or
/// [`PiiError::InvalidRange`] instead of redacting the wrong bytes. Findings
/// may come from several detectors and overlap: overlapping redactions are
/// merged into one placeholder (that of the earliest, then longest,
/// finding), and a redaction wins over a keep where they overlap.
pub fn apply_decisions<F>(
    text: &str,
    findings: &[Finding],
    mut decide: F,
) -> Result<String, PiiError>
where
    F: FnMut(&Finding) -> Decision,
{
    let mut redacted: Vec<(usize, usize, &'static str)> = Vec::new();
    for f in findings {
        if f.start >= f.end
            || f.end > text.len()
            || !text.is_char_boundary(f.start)
            || !text.is_char_boundary(f.end)
        {
            return Err(PiiError::InvalidRange {
                start: f.start,
                end: f.end,
                len: text.len(),
            });
        }
        if text.get(f.start..f.end) != Some(f.text.as_str()) {
            return Err(PiiError::StaleFinding {
                start: f.start,
                end: f.end,
            });
        }
        if decide(f) == Decision::Redact {
            redacted.push((f.start, f.end, f.placeholder));
        }
    }
    redacted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i < redacted.len() {
        let (start, mut end, placeholder) = redacted[i];
        i += 1;
        while i < redacted.len() && redacted[i].0 < end {
            end = end.max(redacted[i].1);
            i += 1;
        }
        out.push_str(&text[pos..start]);
        out.push_str(placeholder);
        pos = end;
    }
    out.push_str(&text[pos..]);
    Ok(out)
}
