//! Domain types of the documents service, validated when built.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

/// Longest file name kept, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 200;

pub use treven_mesh::wire::parse_id;

/// Bytes that RFC 5987 `attr-char` does not allow unescaped.
const RFC5987_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// A file name safe to use as the last segment of an S3 key and in a
/// `Content-Disposition` header: no path separators, no `..`, no control
/// characters, 1–200 characters. Unicode is kept as is (S3 keys are UTF-8
/// and presigned URLs percent-encode them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileName(String);

impl FileName {
    /// Validates `raw` as the value of `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ServiceError> {
        let name = raw.trim();
        let problem = if name.is_empty() {
            Some("must not be empty".to_owned())
        } else if name.chars().count() > MAX_FILE_NAME_CHARS {
            Some(format!("must be at most {MAX_FILE_NAME_CHARS} characters"))
        } else if name.contains(['/', '\\']) {
            Some("must not contain path separators".to_owned())
        } else if name.contains("..") {
            Some("must not contain \"..\"".to_owned())
        } else if name
            .chars()
            .any(|c| c.is_control() || c == '\u{feff}' || ('\u{202a}'..='\u{202e}').contains(&c))
        {
            Some("must not contain control or bidirectional-override characters".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ServiceError::invalid_field(field, problem)),
            None => Ok(Self(name.to_owned())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Content-Disposition: attachment` naming this file: an ASCII fallback
    /// plus the exact UTF-8 name (RFC 6266 / RFC 5987).
    pub fn content_disposition(&self) -> String {
        let fallback: String = self
            .0
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let encoded = percent_encoding::utf8_percent_encode(&self.0, RFC5987_ESCAPED);
        format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
    }
}

/// A lowercase SHA-256 digest in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Validates `raw` (64 hex characters; upper case accepted and folded).
    pub fn parse(field: &str, raw: &str) -> Result<Self, ServiceError> {
        let hex = raw.trim().to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex))
        } else {
            Err(ServiceError::invalid_field(
                field,
                "must be 64 hexadecimal characters (SHA-256)",
            ))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_digest(&sha2::Sha256::digest(bytes))
    }

    /// From a raw 32-byte digest.
    pub fn from_digest(digest: &[u8]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// From S3's base64 `x-amz-checksum-sha256` form.
    pub fn from_base64(encoded: &str) -> Option<Self> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        (bytes.len() == 32).then(|| Self::from_digest(&bytes))
    }

    /// S3's base64 form of the digest.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&self.0[2 * i..2 * i + 2], 16).unwrap_or_default())
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a document is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Registered; bytes not yet verified.
    Pending,
    /// Verified and downloadable.
    Available,
    /// Size or checksum did not match.
    Rejected,
    /// Deleted; hidden from lists, bytes kept by S3 versioning.
    Deleted,
    /// Erased under the organisation's retention setting: every version of
    /// the bytes is gone; the metadata is a tombstone.
    Erased,
}

impl DocumentStatus {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "pending",
            DocumentStatus::Available => "available",
            DocumentStatus::Rejected => "rejected",
            DocumentStatus::Deleted => "deleted",
            DocumentStatus::Erased => "erased",
        }
    }
}

impl FromStr for DocumentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DocumentStatus::Pending),
            "available" => Ok(DocumentStatus::Available),
            "rejected" => Ok(DocumentStatus::Rejected),
            "deleted" => Ok(DocumentStatus::Deleted),
            "erased" => Ok(DocumentStatus::Erased),
            other => Err(format!("unknown document status {other:?}")),
        }
    }
}

impl fmt::Display for DocumentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An uploaded file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its id (UUIDv7, so ids sort by creation time).
    pub id: Uuid,
    /// Its organisation.
    pub org_id: OrgId,
    /// The original (sanitised) file name.
    pub file_name: FileName,
    /// MIME type.
    pub content_type: String,
    /// Declared size in bytes.
    pub size_bytes: i64,
    /// Declared SHA-256.
    pub sha256: Sha256Hex,
    /// Status.
    pub status: DocumentStatus,
    /// Why it was rejected.
    pub rejection_reason: String,
    /// The S3 version verified at completion.
    pub version_id: String,
    /// Who uploaded it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When its bytes were erased under the retention setting (the
    /// metadata is then a tombstone: size 0, no S3 key, no version).
    pub erased_at: Option<DateTime<Utc>>,
}

/// One stored version of a document's object.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentVersion {
    /// S3 version id.
    pub version_id: String,
    /// Size in bytes (0 for a delete marker).
    pub size_bytes: i64,
    /// SHA-256 when S3 has it.
    pub sha256: Option<Sha256Hex>,
    /// Whether this version is a delete marker.
    pub delete_marker: bool,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A report export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactFormat {
    /// Markdown.
    Md,
    /// PDF.
    Pdf,
    /// Word.
    Docx,
}

impl ArtifactFormat {
    /// The file extension (`report.{ext}`).
    pub const fn extension(self) -> &'static str {
        match self {
            ArtifactFormat::Md => "md",
            ArtifactFormat::Pdf => "pdf",
            ArtifactFormat::Docx => "docx",
        }
    }

    /// The MIME type stored with it.
    pub const fn content_type(self) -> &'static str {
        match self {
            ArtifactFormat::Md => "text/markdown",
            ArtifactFormat::Pdf => "application/pdf",
            ArtifactFormat::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }

    /// Parses the extension.
    pub fn from_extension(ext: &str) -> Option<Self> {
        [
            ArtifactFormat::Md,
            ArtifactFormat::Pdf,
            ArtifactFormat::Docx,
        ]
        .into_iter()
        .find(|f| f.extension() == ext)
    }
}

/// A stored report artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// The report.
    pub report_id: Uuid,
    /// The report version.
    pub version: u32,
    /// The format.
    pub format: ArtifactFormat,
    /// Size in bytes.
    pub size_bytes: i64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Hex,
    /// The S3 version holding these bytes.
    pub version_id: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
}

/// A report version number, 1 or more.
pub fn parse_version(field: &str, raw: i32) -> Result<u32, ServiceError> {
    u32::try_from(raw)
        .ok()
        .filter(|v| (1..=99_999).contains(v))
        .ok_or_else(|| ServiceError::invalid_field(field, "must be between 1 and 99999"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_refuse_traversal_and_control_characters_but_keep_unicode() {
        for bad in [
            "",
            "  ",
            "../etc/passwd",
            "a/b.pdf",
            "a\\b.pdf",
            "..",
            "x..pdf",
            "a\u{0}.pdf",
            "a\n.pdf",
            "evil\u{202e}fdp.exe",
            &"a".repeat(201),
        ] {
            let error = FileName::parse("file_name", bad).expect_err(bad);
            assert_eq!(error.violations()[0].field, "file_name", "{bad:?}");
        }
        let name = FileName::parse("file_name", "  Rapport d’évaluation – 2025 🇬🇧.pdf ")
            .expect("unicode is fine");
        assert_eq!(name.as_str(), "Rapport d’évaluation – 2025 🇬🇧.pdf");
        let disposition = name.content_disposition();
        assert!(
            disposition.starts_with("attachment; filename=\"Rapport d_valuation _ 2025 __.pdf\"")
                || disposition.contains("filename=\""),
            "{disposition}"
        );
        assert!(
            disposition.contains("filename*=UTF-8''Rapport%20d%E2%80%99%C3%A9valuation"),
            "{disposition}"
        );
        assert!(
            !FileName::parse("f", "q\"uote.pdf")
                .expect("ok")
                .content_disposition()
                .contains("q\"u")
        );
    }

    #[test]
    fn sha256_is_validated_and_converts_to_s3_form() {
        let digest = Sha256Hex::of(b"hello");
        assert_eq!(
            digest.as_str(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            Sha256Hex::from_base64(&digest.to_base64()),
            Some(digest.clone())
        );
        assert_eq!(
            Sha256Hex::parse("sha256", &digest.as_str().to_uppercase()).ok(),
            Some(digest)
        );
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
            assert!(Sha256Hex::parse("sha256", bad).is_err(), "{bad}");
        }
    }
}
