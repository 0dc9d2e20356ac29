//! Section keys: the ten sections of a KJ report, in report order, named on
//! the wire and in stored JSON by their lower_snake_case key. The proto
//! enum `treven.reports.v1.SectionKey` documents the same list.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use treven_mesh::ServiceError;
use treven_proto::treven::reports::v1 as pb;

/// A section of a report, named by its key (`key_judgements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKey {
    /// Title, country/region, sector/theme, date, issue number, overview.
    TitleBlock,
    /// 5–10 lettered judgements.
    KeyJudgements,
    /// The fixed disclaimer.
    Disclaimer,
    /// INTRODUCTION.
    Introduction,
    /// RECRUITMENT.
    Recruitment,
    /// DEMAND.
    Demand,
    /// MONEY.
    Money,
    /// RED FLAG INDICATORS.
    RedFlagIndicators,
    /// INFORMATION REQUIREMENTS.
    InformationRequirements,
    /// The three headline cards.
    HeadlineCards,
}

impl SectionKey {
    /// Every section, in report order.
    pub const ALL: [SectionKey; 10] = [
        SectionKey::TitleBlock,
        SectionKey::KeyJudgements,
        SectionKey::Disclaimer,
        SectionKey::Introduction,
        SectionKey::Recruitment,
        SectionKey::Demand,
        SectionKey::Money,
        SectionKey::RedFlagIndicators,
        SectionKey::InformationRequirements,
        SectionKey::HeadlineCards,
    ];

    /// The key, e.g. `key_judgements`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SectionKey::TitleBlock => "title_block",
            SectionKey::KeyJudgements => "key_judgements",
            SectionKey::Disclaimer => "disclaimer",
            SectionKey::Introduction => "introduction",
            SectionKey::Recruitment => "recruitment",
            SectionKey::Demand => "demand",
            SectionKey::Money => "money",
            SectionKey::RedFlagIndicators => "red_flag_indicators",
            SectionKey::InformationRequirements => "information_requirements",
            SectionKey::HeadlineCards => "headline_cards",
        }
    }

    /// The heading printed above it.
    pub const fn heading(self) -> &'static str {
        match self {
            SectionKey::TitleBlock => "TITLE",
            SectionKey::KeyJudgements => "KEY JUDGEMENTS",
            SectionKey::Disclaimer => "DISCLAIMER",
            SectionKey::Introduction => "INTRODUCTION",
            SectionKey::Recruitment => "RECRUITMENT",
            SectionKey::Demand => "DEMAND",
            SectionKey::Money => "MONEY",
            SectionKey::RedFlagIndicators => "RED FLAG INDICATORS",
            SectionKey::InformationRequirements => "INFORMATION REQUIREMENTS",
            SectionKey::HeadlineCards => "HEADLINE CARDS",
        }
    }

    /// The sections the generator writes (all but the disclaimer).
    pub fn generated() -> Vec<SectionKey> {
        SectionKey::ALL
            .into_iter()
            .filter(|s| *s != SectionKey::Disclaimer)
            .collect()
    }

    /// A section key from a request; the disclaimer is refused when
    /// `editable` (it is fixed).
    pub fn parse_editable(field: &str, raw: &str) -> Result<SectionKey, ServiceError> {
        let section: SectionKey = raw.parse().map_err(|_| {
            ServiceError::invalid_field(
                field,
                format!(
                    "unknown section {raw:?}; one of {}",
                    SectionKey::ALL.map(SectionKey::as_str).join(", ")
                ),
            )
        })?;
        if section == SectionKey::Disclaimer {
            return Err(ServiceError::invalid_field(
                field,
                "the disclaimer is fixed and cannot be changed",
            ));
        }
        Ok(section)
    }
}

impl fmt::Display for SectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SectionKey {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SectionKey::ALL
            .into_iter()
            .find(|section| section.as_str() == s)
            .ok_or(())
    }
}

impl SectionKey {
    /// Parses a key (`key_judgements`); `None` for an unknown key.
    pub fn parse(raw: &str) -> Option<SectionKey> {
        SectionKey::ALL.into_iter().find(|key| key.as_str() == raw)
    }

    /// The documenting proto enum value of this key.
    pub const fn to_pb(self) -> pb::SectionKey {
        match self {
            SectionKey::TitleBlock => pb::SectionKey::TitleBlock,
            SectionKey::KeyJudgements => pb::SectionKey::KeyJudgements,
            SectionKey::Disclaimer => pb::SectionKey::Disclaimer,
            SectionKey::Introduction => pb::SectionKey::Introduction,
            SectionKey::Recruitment => pb::SectionKey::Recruitment,
            SectionKey::Demand => pb::SectionKey::Demand,
            SectionKey::Money => pb::SectionKey::Money,
            SectionKey::RedFlagIndicators => pb::SectionKey::RedFlagIndicators,
            SectionKey::InformationRequirements => pb::SectionKey::InformationRequirements,
            SectionKey::HeadlineCards => pb::SectionKey::HeadlineCards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_match_the_proto_enum() {
        for key in SectionKey::ALL {
            assert_eq!(SectionKey::parse(key.as_str()), Some(key));
            assert_eq!(key.as_str().parse::<SectionKey>(), Ok(key));
            let proto_name = key.to_pb().as_str_name().to_ascii_lowercase();
            assert_eq!(proto_name, format!("section_key_{}", key.as_str()));
            assert_eq!(
                serde_json::to_value(key).ok(),
                Some(serde_json::Value::String(key.as_str().to_owned()))
            );
        }
        assert_eq!(SectionKey::parse("summary"), None);
        assert!(!SectionKey::generated().contains(&SectionKey::Disclaimer));
        assert_eq!(SectionKey::generated().len(), 9);
    }
}
