//! A quick check (no criterion) of how long a 3,000-word report takes to
//! render in each format. Prints the times; asserts only that the output is
//! complete, never a timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use treven_reports::model::{DISCLAIMER, ExportFormat};
use treven_reports::{quality, render};

#[test]
fn a_three_thousand_word_report_renders_in_every_format() {
    let mut content = treven_kj::content_from_pb(support::report_content("GB", ""));
    content.disclaimer = DISCLAIMER.to_owned();
    // Grow the report to about 3,000 words.
    while quality::word_count(&content) < 3_000 {
        content.recruitment.push_str(
            "\n\nWorkers describe long shifts, withheld documents and deductions for housing and transport [rec1].",
        );
    }
    let words = quality::word_count(&content);
    for format in [
        ExportFormat::Markdown,
        ExportFormat::Pdf,
        ExportFormat::Docx,
    ] {
        let started = Instant::now();
        let bytes = render::render(&content, format).expect("renders");
        let elapsed = started.elapsed();
        println!(
            "{words} words as {format}: {} bytes in {elapsed:?}",
            bytes.len()
        );
        let text = match format {
            ExportFormat::Pdf => {
                let doc = lopdf::Document::load_mem(&bytes).expect("a PDF");
                let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
                doc.extract_text(&pages).expect("text")
            }
            ExportFormat::Docx => {
                use std::io::Read as _;
                let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).expect("zip");
                let mut xml = String::new();
                zip.by_name("word/document.xml")
                    .expect("document")
                    .read_to_string(&mut xml)
                    .expect("utf-8");
                xml.replace('<', " <").replace('>', "> ")
            }
            ExportFormat::Markdown => String::from_utf8(bytes).expect("utf-8"),
        };
        let withheld = text.matches("withheld").count();
        assert!(
            withheld > 10,
            "{format}: the added paragraphs are all there ({withheld})"
        );
    }
}
