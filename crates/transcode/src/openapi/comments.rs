//! Proto comments from the descriptors' source info, for summaries and
//! descriptions.

use std::collections::HashMap;

use prost_reflect::FileDescriptor;

/// Leading comments of every element of the files seen so far, by path.
#[derive(Debug, Default)]
pub(super) struct Comments {
    by_file: HashMap<String, HashMap<Vec<i32>, String>>,
}

impl Comments {
    /// The cleaned leading comment of the element at `path` in `file`.
    pub(super) fn of(&mut self, file: &FileDescriptor, path: &[i32]) -> Option<String> {
        let locations = self
            .by_file
            .entry(file.name().to_owned())
            .or_insert_with(|| index(file));
        locations.get(path).cloned()
    }
}

fn index(file: &FileDescriptor) -> HashMap<Vec<i32>, String> {
    let mut out = HashMap::new();
    if let Some(info) = &file.file_descriptor_proto().source_code_info {
        for location in &info.location {
            if let Some(comment) = location.leading_comments.as_deref().and_then(clean) {
                out.insert(location.path.clone(), comment);
            }
        }
    }
    out
}

/// Trims the one space after `//` and blank lines around the comment.
fn clean(raw: &str) -> Option<String> {
    let lines: Vec<&str> = raw
        .lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
        .collect();
    let text = lines.join("\n");
    let text = text.trim_matches('\n').to_owned();
    (!text.trim().is_empty()).then_some(text)
}

/// The first sentence of the first paragraph, on one line.
pub(super) fn summary(comment: &str) -> String {
    let paragraph = comment
        .split("\n\n")
        .next()
        .unwrap_or(comment)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match paragraph.find(". ") {
        Some(end) => paragraph[..=end].to_owned(),
        None => paragraph,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_first_sentences() {
        assert_eq!(
            summary("Adds a user (admins only).\nThe audit log keeps it.\n\nMore."),
            "Adds a user (admins only)."
        );
        assert_eq!(summary("One line"), "One line");
        assert_eq!(clean(" a\n b\n").as_deref(), Some("a\nb"));
        assert_eq!(clean("\n"), None);
    }
}
