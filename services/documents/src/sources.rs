//! Sources: citable items with a trust score (DOMAIN.md weights: publisher
//! tier 30, recency 25, primary data 20, documented methodology 15,
//! geographic match 10).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use treven_mesh::ServiceError;

/// What kind of body published a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublisherKind {
    /// A government.
    Government,
    /// UN bodies and other intergovernmental organisations (UNODC, ILO, IOM, UNICEF, OSCE).
    Intergovernmental,
    /// Major research bodies.
    Research,
    /// Established NGOs.
    Ngo,
    /// Business & human-rights resources.
    BusinessHumanRights,
    /// Quality journalism.
    Journalism,
    /// Anything else: use with verification.
    Other,
    /// The organisation's own dataset.
    Internal,
    /// Never used: anonymous blogs.
    AnonymousBlog,
    /// Never used: unverified social posts.
    UnverifiedSocial,
}

impl PublisherKind {
    /// The tier (1 best), or the reason the kind is never used.
    pub fn tier(self) -> Result<u8, &'static str> {
        match self {
            PublisherKind::Government
            | PublisherKind::Intergovernmental
            | PublisherKind::Research
            | PublisherKind::Internal => Ok(1),
            PublisherKind::Ngo | PublisherKind::BusinessHumanRights | PublisherKind::Journalism => {
                Ok(2)
            }
            PublisherKind::Other => Ok(3),
            PublisherKind::AnonymousBlog => Err("anonymous blogs are never used as sources"),
            PublisherKind::UnverifiedSocial => {
                Err("unverified social posts are never used as sources")
            }
        }
    }
}

/// What a source points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Locator {
    /// A public URL (canonical form: scheme and host lowercase, no fragment,
    /// no trailing slash).
    Url(String),
    /// An internal dataset and the period it covers, cited as
    /// `[Internal: {dataset}, {date range}]`.
    Dataset {
        /// Dataset name.
        dataset: String,
        /// Start of the period.
        from: Option<DateTime<Utc>>,
        /// End of the period.
        to: Option<DateTime<Utc>>,
    },
}

impl Locator {
    /// Validates and canonicalises a URL.
    pub fn url(raw: &str) -> Result<Self, ServiceError> {
        let raw = raw.trim();
        let invalid = |why: &str| ServiceError::invalid_field("url", why);
        if raw.len() > 2048 {
            return Err(invalid("must be at most 2048 characters"));
        }
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| invalid("must be an http(s) URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(invalid("must be an http(s) URL"));
        }
        if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must be an http(s) URL without spaces"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if host.is_empty() {
            return Err(invalid("must name a host"));
        }
        let path = path.trim_end_matches('/');
        let canonical = if path.is_empty() {
            format!("{scheme}://{}", host.to_ascii_lowercase())
        } else {
            format!("{scheme}://{}/{path}", host.to_ascii_lowercase())
        };
        Ok(Locator::Url(canonical))
    }

    /// The stable id of the source this locator names: the same URL or
    /// dataset always maps to the same source (upserts are idempotent).
    pub fn source_id(&self) -> String {
        let key = match self {
            Locator::Url(url) => format!("url:{url}"),
            Locator::Dataset { dataset, from, to } => format!(
                "dataset:{}:{}:{}",
                dataset.to_lowercase(),
                from.map(|d| d.date_naive().to_string()).unwrap_or_default(),
                to.map(|d| d.date_naive().to_string()).unwrap_or_default()
            ),
        };
        let digest = sha2::Sha256::digest(key.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A citable source as stored (the score is computed when read, because
/// recency changes with time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Stable id derived from the locator.
    pub id: String,
    /// URL or dataset.
    pub locator: Locator,
    /// Title.
    pub title: String,
    /// Publisher name.
    pub publisher: String,
    /// Publisher kind.
    pub publisher_kind: PublisherKind,
    /// When it was published.
    pub published_at: Option<DateTime<Utc>>,
    /// Summary.
    pub summary: String,
    /// Lowercase tags.
    pub tags: Vec<String>,
    /// ISO 3166-1 alpha-2 country codes.
    pub countries: Vec<String>,
    /// Sectors or themes.
    pub sectors: Vec<String>,
    /// Whether it presents primary data.
    pub primary_data: bool,
    /// Whether its methodology is documented.
    pub methodology_documented: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A trust score and its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrustScore {
    /// Sum, 0–100.
    pub total: u8,
    /// Publisher tier, 0–30.
    pub publisher_tier: u8,
    /// Recency, 0–25.
    pub recency: u8,
    /// Primary data, 0 or 20.
    pub primary_data: u8,
    /// Documented methodology, 0 or 15.
    pub methodology: u8,
    /// Geographic specificity, 0–10.
    pub geographic_match: u8,
}

impl Source {
    /// The tier of its publisher (1–3).
    pub fn tier(&self) -> u8 {
        self.publisher_kind.tier().unwrap_or(3)
    }

    /// Scores the source at `now`.
    pub fn trust(&self, now: DateTime<Utc>) -> TrustScore {
        let publisher_tier = match self.tier() {
            1 => 30,
            2 => 20,
            _ => 10,
        };
        let recency = match self.published_at.map(|at| (now - at).num_days()) {
            Some(days) if days <= 183 => 25,
            Some(days) if days <= 365 => 18,
            Some(days) if days <= 730 => 10,
            Some(days) if days <= 1826 => 5,
            _ => 0,
        };
        let primary_data = if self.primary_data { 20 } else { 0 };
        let methodology = if self.methodology_documented { 15 } else { 0 };
        // A source about one or a few named countries informs a country
        // judgement more than a global overview or an unplaced one.
        let geographic_match = match self.countries.len() {
            0 => 0,
            1..=3 => 10,
            _ => 5,
        };
        TrustScore {
            total: publisher_tier + recency + primary_data + methodology + geographic_match,
            publisher_tier,
            recency,
            primary_data,
            methodology,
            geographic_match,
        }
    }

    /// Whether it matches a search (all given filters must match).
    pub fn matches(&self, query: &SourceQuery) -> bool {
        let country_ok = query
            .country
            .as_ref()
            .is_none_or(|c| self.countries.iter().any(|x| x == c));
        let sector_ok = query
            .sector
            .as_ref()
            .is_none_or(|s| self.sectors.iter().any(|x| x.eq_ignore_ascii_case(s)));
        let tags_ok = query.tags.iter().all(|t| self.tags.contains(t));
        let text_ok = query.words.iter().all(|word| {
            [&self.title, &self.publisher, &self.summary]
                .iter()
                .any(|field| field.to_lowercase().contains(word))
        });
        country_ok && sector_ok && tags_ok && text_ok
    }
}

/// A validated source search.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceQuery {
    /// Country code.
    pub country: Option<String>,
    /// Sector.
    pub sector: Option<String>,
    /// Required tags.
    pub tags: Vec<String>,
    /// Lowercase words that must all appear in title, publisher or summary.
    pub words: Vec<String>,
    /// Minimum total score.
    pub min_trust: u8,
}

/// Validates an ISO 3166-1 alpha-2 code (upper-cased).
pub fn country_code(field: &str, raw: &str) -> Result<String, ServiceError> {
    let code = raw.trim().to_ascii_uppercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(ServiceError::invalid_field(
            field,
            "must be an ISO 3166-1 alpha-2 country code such as GB",
        ))
    }
}

/// Validates a tag: lowercase letters, digits and dashes, 1–40 characters.
pub fn tag(field: &str, raw: &str) -> Result<String, ServiceError> {
    let tag = raw.trim().to_lowercase();
    if (1..=40).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(tag)
    } else {
        Err(ServiceError::invalid_field(
            field,
            "tags are 1–40 lowercase letters, digits or dashes",
        ))
    }
}

/// Validates free text of at most `max` characters (required when `min` is 1).
pub fn text(field: &str, raw: &str, min: usize, max: usize) -> Result<String, ServiceError> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min {
        return Err(ServiceError::invalid_field(field, "must not be empty"));
    }
    if chars > max {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::invalid_field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn source(
        kind: PublisherKind,
        age_days: i64,
        primary: bool,
        method: bool,
        countries: usize,
    ) -> Source {
        let now = Utc::now();
        Source {
            id: "x".into(),
            locator: Locator::Url("https://example.org".into()),
            title: "Labour exploitation in UK agriculture".into(),
            publisher: "UNODC".into(),
            publisher_kind: kind,
            published_at: Some(now - Duration::days(age_days)),
            summary: "Seasonal workers and debt bondage".into(),
            tags: vec!["agriculture".into()],
            countries: (0..countries).map(|i| format!("C{i}")).collect(),
            sectors: vec!["Agriculture".into()],
            primary_data: primary,
            methodology_documented: method,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_domain_weights_add_up() {
        let best = source(PublisherKind::Intergovernmental, 30, true, true, 1).trust(Utc::now());
        assert_eq!(
            (
                best.total,
                best.publisher_tier,
                best.recency,
                best.primary_data,
                best.methodology,
                best.geographic_match
            ),
            (100, 30, 25, 20, 15, 10)
        );
        let weak = source(PublisherKind::Other, 4000, false, false, 0).trust(Utc::now());
        assert_eq!(weak.total, 10);
        let mid = source(PublisherKind::Journalism, 300, false, true, 10).trust(Utc::now());
        assert_eq!(mid.total, 20 + 18 + 15 + 5);
    }

    #[test]
    fn never_use_kinds_are_refused_with_a_reason() {
        assert!(
            PublisherKind::AnonymousBlog
                .tier()
                .expect_err("never used")
                .contains("anonymous blogs")
        );
        assert!(PublisherKind::UnverifiedSocial.tier().is_err());
        assert_eq!(PublisherKind::Internal.tier(), Ok(1));
    }

    #[test]
    fn urls_are_canonical_so_upserts_find_the_same_source() {
        let a = Locator::url("HTTPS://WWW.UNODC.org/glotip/2024/#summary").expect("valid");
        let b = Locator::url("https://www.unodc.org/glotip/2024").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.source_id(), b.source_id());
        for bad in [
            "ftp://x",
            "www.example.org",
            "https://",
            "https://a b",
            &format!("https://x/{}", "a".repeat(2100)),
        ] {
            assert!(Locator::url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_filters_combine() {
        let s = source(PublisherKind::Government, 1, true, true, 1);
        let query = SourceQuery {
            country: Some("C0".into()),
            tags: vec!["agriculture".into()],
            words: vec!["debt".into()],
            ..Default::default()
        };
        assert!(s.matches(&query));
        assert!(!s.matches(&SourceQuery {
            country: Some("GB".into()),
            ..Default::default()
        }));
        assert!(!s.matches(&SourceQuery {
            words: vec!["fishing".into()],
            ..Default::default()
        }));
    }
}
