//! Section-by-section diffs between two versions: each section is rendered
//! as markdown (with its citations) and diffed word by word.

use similar::{ChangeTag, TextDiff};

use crate::model::{Content, Section};

/// How a section changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same in both.
    Unchanged,
    /// Only in the newer.
    Added,
    /// Only in the older.
    Removed,
    /// Different.
    Modified,
}

/// One step of a text diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// In both.
    Equal,
    /// Only in the newer.
    Insert,
    /// Only in the older.
    Delete,
}

/// One section's diff.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionDiff {
    /// The section.
    pub section: Section,
    /// How it changed.
    pub change: Change,
    /// The text diff; empty when unchanged.
    pub ops: Vec<(OpKind, String)>,
}

/// Every section of `from` against `to`, in report order.
pub fn diff(from: &Content, to: &Content) -> Vec<SectionDiff> {
    Section::ALL
        .into_iter()
        .map(|section| {
            let old = (!from.section_is_empty(section)).then(|| from.section_markdown(section));
            let new = (!to.section_is_empty(section)).then(|| to.section_markdown(section));
            let change = match (&old, &new) {
                (None, None) => Change::Unchanged,
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(a), Some(b)) if a == b => Change::Unchanged,
                _ => Change::Modified,
            };
            let ops = if change == Change::Unchanged {
                Vec::new()
            } else {
                text_ops(
                    old.as_deref().unwrap_or_default(),
                    new.as_deref().unwrap_or_default(),
                )
            };
            SectionDiff {
                section,
                change,
                ops,
            }
        })
        .collect()
}

/// A word diff of `old` and `new`, consecutive steps of one kind merged.
pub fn text_ops(old: &str, new: &str) -> Vec<(OpKind, String)> {
    let diff = TextDiff::from_words(old, new);
    let mut ops: Vec<(OpKind, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        let kind = match change.tag() {
            ChangeTag::Equal => OpKind::Equal,
            ChangeTag::Insert => OpKind::Insert,
            ChangeTag::Delete => OpKind::Delete,
        };
        match ops.last_mut() {
            Some((last, text)) if *last == kind => text.push_str(change.value()),
            _ => ops.push((kind, change.value().to_owned())),
        }
    }
    ops
}

/// A one-line summary of what changed in `section`.
pub fn summary(section: Section, from: &Content, to: &Content) -> String {
    let old = from.section_markdown(section);
    let new = to.section_markdown(section);
    let (mut inserted, mut deleted) = (0usize, 0usize);
    for (kind, text) in text_ops(&old, &new) {
        let words = text.split_whitespace().count();
        match kind {
            OpKind::Insert => inserted += words,
            OpKind::Delete => deleted += words,
            OpKind::Equal => {}
        }
    }
    format!("{section}: {inserted} words added, {deleted} words removed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_changed_section_is_modified() {
        let from = Content {
            demand: "Demand is high [c1].".into(),
            money: "Cash moves [c2].".into(),
            ..Content::default()
        };
        let to = Content {
            demand: "Demand is rising fast [c1].".into(),
            ..from.clone()
        };
        let sections = diff(&from, &to);
        let demand = sections
            .iter()
            .find(|s| s.section == Section::Demand)
            .expect("demand");
        assert_eq!(demand.change, Change::Modified);
        assert!(
            demand
                .ops
                .iter()
                .any(|(k, t)| *k == OpKind::Insert && t.contains("rising"))
        );
        assert!(
            demand
                .ops
                .iter()
                .any(|(k, t)| *k == OpKind::Delete && t.contains("high"))
        );
        let money = sections
            .iter()
            .find(|s| s.section == Section::Money)
            .expect("money");
        assert_eq!(money.change, Change::Unchanged);
        assert!(money.ops.is_empty());
        assert_eq!(
            summary(Section::Demand, &from, &to),
            "demand: 2 words added, 1 words removed"
        );
    }
}
