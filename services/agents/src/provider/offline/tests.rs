//! The offline model's tests: its report passes every quality check, chat
//! searches then answers, latency comes first.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::{HashMap, HashSet};

use chrono::Utc;

use super::*;
use crate::generator::{CitationIds, GeneratedSection, Pillar, SectionBody, parse_section};

fn sources() -> Vec<SourceBrief> {
    (1..=4)
        .map(|i| SourceBrief {
            id: format!("00000000-0000-7000-8000-00000000000{i}"),
            label: format!("Home Office, Modern Slavery Statistics {i} (2025)"),
            url: format!("https://www.gov.uk/stats/{i}"),
            title: format!("Modern Slavery Statistics {i}"),
            publisher: "Home Office".into(),
            summary: "National referral statistics".into(),
            trust: 85,
        })
        .collect()
}

/// Every text field of a section, as the word count sees it.
fn texts(section: &GeneratedSection) -> Vec<(String, String)> {
    match &section.body {
        SectionBody::TitleBlock(t) => vec![
            ("title".into(), t.title.clone()),
            ("country_region".into(), t.country_region.clone()),
            ("sector_theme".into(), t.sector_theme.clone()),
            ("overview".into(), t.overview.clone()),
        ],
        SectionBody::KeyJudgements(items) => items
            .iter()
            .map(|j| ("kj".into(), j.text.clone()))
            .collect(),
        SectionBody::Text(text) => vec![("text".into(), text.clone())],
        SectionBody::List(items) => items.iter().map(|i| ("item".into(), i.clone())).collect(),
        SectionBody::Cards(cards) => cards
            .iter()
            .flat_map(|c| {
                [
                    ("headline".into(), c.headline.clone()),
                    ("detail".into(), c.detail.clone()),
                ]
            })
            .collect(),
    }
}

fn markers(text: &str) -> Vec<String> {
    text.split('[')
        .skip(1)
        .filter_map(|rest| rest.split_once(']').map(|(inner, _)| inner.to_owned()))
        .filter(|inner| inner.starts_with('c') && inner[1..].chars().all(|c| c.is_ascii_digit()))
        .collect()
}

#[test]
fn the_offline_report_passes_every_quality_check() {
    let scope = ScopeBrief {
        country: "GB".into(),
        sector: "agriculture".into(),
        exploitation: "labour".into(),
        ..ScopeBrief::default()
    };
    let mut ids = CitationIds::default();
    let mut sections = Vec::new();
    for key in SectionKey::generated() {
        let task = SectionTask {
            section: key,
            scope: scope.clone(),
            sources: sources(),
            instructions: String::new(),
        };
        let raw = section_json(&task).to_string();
        sections.push(parse_section(&task, &raw, &mut ids, 1, Utc::now()).unwrap());
    }
    let mut words = 0;
    let mut all_ids = HashSet::new();
    for section in &sections {
        let cited: HashMap<&str, _> = section
            .citations
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        for citation in &section.citations {
            assert!(
                all_ids.insert(citation.id.clone()),
                "citation ids are unique"
            );
            assert_eq!(citation.section, section.section);
        }
        for (field, text) in texts(section) {
            assert!(
                !text.trim().is_empty(),
                "{:?} {field} is empty",
                section.section
            );
            words += text.split_whitespace().count();
            for marker in markers(&text) {
                assert!(
                    cited.contains_key(marker.as_str()),
                    "{marker} resolves in {:?}",
                    section.section
                );
            }
            assert!(
                treven_pii::detect(&text).unwrap().is_empty(),
                "no personal data in {:?}: {text}",
                section.section
            );
        }
        match &section.body {
            SectionBody::TitleBlock(t) => {
                assert_eq!(t.title, t.title.to_uppercase());
                let sentences = t.overview.matches(". ").count() + 1;
                assert!((3..=5).contains(&sentences), "{sentences} sentences");
            }
            SectionBody::KeyJudgements(items) => {
                assert!((5..=10).contains(&items.len()));
                for (i, j) in items.iter().enumerate() {
                    assert_eq!(j.letter, char::from(b'A' + i as u8).to_string());
                    assert!(!markers(&j.text).is_empty(), "judgement {i} cites");
                }
            }
            SectionBody::Text(text) => {
                for paragraph in text.split("\n\n") {
                    assert!(
                        !markers(paragraph).is_empty(),
                        "paragraph cites: {paragraph}"
                    );
                }
            }
            SectionBody::List(items) => {
                if section.section == SectionKey::RedFlagIndicators {
                    assert!((5..=10).contains(&items.len()));
                }
            }
            SectionBody::Cards(cards) => {
                let pillars: Vec<Pillar> = cards.iter().map(|c| c.pillar).collect();
                assert_eq!(
                    pillars,
                    [Pillar::Recruitment, Pillar::Demand, Pillar::Money]
                );
                assert!(cards.iter().all(|c| !markers(&c.detail).is_empty()));
            }
        }
    }
    // The disclaimer (fixed text, about 100 words) is added by reports.
    assert!(
        (2_100..=2_800).contains(&words),
        "{words} words before the disclaimer"
    );
}

#[test]
fn offline_chat_searches_then_answers() {
    let request = ModelRequest {
        turns: vec![crate::provider::Turn::user(
            "What drives labour exploitation in farming?",
        )],
        tools: vec![crate::tools::spec(crate::model::Tool::SearchSources)],
        ..ModelRequest::default()
    };
    let ChatStep::Call { name, input } = chat_step(&request) else {
        panic!("searches first")
    };
    assert_eq!(name, "search_sources");
    assert_eq!(input["text"], "What drives labour exploitation in farming?");
}

#[tokio::test]
async fn the_configured_latency_comes_before_the_first_event_only() {
    use futures::StreamExt as _;
    let latency = std::time::Duration::from_millis(300);
    let request = || ModelRequest {
        turns: vec![crate::provider::Turn::user("Hello")],
        ..ModelRequest::default()
    };
    let started = std::time::Instant::now();
    let mut slow = OfflineProvider::with_latency(latency).stream(request());
    slow.next().await.unwrap().unwrap();
    let first = started.elapsed();
    assert!(first >= latency, "first event after {first:?}");
    let rest: Vec<_> = slow.collect().await;
    assert!(!rest.is_empty(), "the rest follows");
    let events: Vec<_> = OfflineProvider::default().stream(request()).collect().await;
    assert_eq!(events.len(), rest.len() + 1, "the same answer, only later");
}
