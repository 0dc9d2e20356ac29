//! Small helpers over UTF-8 text: neighbouring characters and context
//! windows that always fall on char boundaries.

/// The character just before byte offset `i`, if any.
pub(crate) fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

/// The character at byte offset `i`, if any.
pub(crate) fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// Up to `bytes` bytes of `text` before byte offset `i`, cut on a char
/// boundary.
pub(crate) fn before(text: &str, i: usize, bytes: usize) -> &str {
    let start = text.floor_char_boundary(i.saturating_sub(bytes));
    text.get(start..i).unwrap_or("")
}

/// Up to `bytes` bytes of `text` after byte offset `i`, cut on a char
/// boundary.
pub(crate) fn after(text: &str, i: usize, bytes: usize) -> &str {
    let end = text.floor_char_boundary(i.saturating_add(bytes).min(text.len()));
    text.get(i..end).unwrap_or("")
}

/// Whether `c` continues a word (letters, digits, underscore).
pub(crate) fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the span `start..end` is not glued to a word character on either
/// side.
pub(crate) fn word_bounded(text: &str, start: usize, end: usize) -> bool {
    !prev_char(text, start).is_some_and(is_word) && !next_char(text, end).is_some_and(is_word)
}

/// Whether the span at `start` continues what comes before it: a letter or
/// digit glued to it, or a digit then one of `seps` (`1,234`, `12 345`), so
/// the span would be the tail of a longer token or number.
pub(crate) fn continues_number_before(text: &str, start: usize, seps: &[char]) -> bool {
    let mut it = text[..start].chars().rev();
    match it.next() {
        Some(c) if c.is_ascii_alphanumeric() => true,
        Some(c) if seps.contains(&c) => it.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Whether the span ending at `end` goes on: a letter or digit glued to it,
/// or one of `seps` then a digit.
pub(crate) fn continues_number_after(text: &str, end: usize, seps: &[char]) -> bool {
    let mut it = text[end..].chars();
    match it.next() {
        Some(c) if c.is_ascii_alphanumeric() => true,
        Some(c) if seps.contains(&c) => it.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}
