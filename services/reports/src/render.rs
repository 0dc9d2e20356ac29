//! Exports: markdown, PDF and DOCX, rendered in-process.
//!
//! A report is first laid out as a list of [`Block`]s (title, headings,
//! paragraphs, list items) and each format writes those blocks:
//! - markdown by hand;
//! - PDF with `lopdf` and the base-14 Helvetica fonts (WinAnsi encoding), so
//!   no font file is embedded and text stays extractable;
//! - DOCX as the minimal WordprocessingML package (content types,
//!   relationships, `word/document.xml`) zipped with the workspace `zip`.

use std::io::Write as _;

use lopdf::content::{Content as PdfContent, Operation};
use lopdf::{Document, Object, Stream, StringFormat, dictionary};

use crate::model::{Confidence, Content, ExportFormat, Pillar, Section};
use crate::quality::paragraphs;

/// One laid-out piece of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// The report title.
    Title(String),
    /// The line under the title.
    Meta(String),
    /// A section heading.
    Heading(String),
    /// A paragraph.
    Paragraph(String),
    /// A list item: its marker (`A.`, `1.`, `-`) and text.
    Item(String, String),
}

/// Renders `content` in `format`.
pub fn render(content: &Content, format: ExportFormat) -> anyhow::Result<Vec<u8>> {
    let blocks = layout(content);
    match format {
        ExportFormat::Markdown => Ok(markdown(&blocks).into_bytes()),
        ExportFormat::Pdf => pdf(&blocks),
        ExportFormat::Docx => docx(&blocks),
    }
}

/// Removes markdown emphasis and heading marks from a line of body text.
fn plain(text: &str) -> String {
    text.replace("**", "")
        .replace("__", "")
        .trim_start_matches('#')
        .trim()
        .to_owned()
}

/// The blocks of a report, in report order.
pub fn layout(content: &Content) -> Vec<Block> {
    let mut blocks = Vec::new();
    let t = &content.title_block;
    blocks.push(Block::Title(t.title.clone()));
    let mut meta = vec![t.country_region.clone(), t.sector_theme.clone()];
    if t.issue_number > 0 {
        meta.push(format!("Issue {}", t.issue_number));
    }
    if let Some(date) = t.issued_at {
        meta.push(date.format("%d %B %Y").to_string());
    }
    meta.retain(|m| !m.trim().is_empty());
    blocks.push(Block::Meta(meta.join(" | ")));
    for p in paragraphs(&t.overview) {
        blocks.push(Block::Paragraph(plain(p)));
    }
    for section in Section::ALL.into_iter().skip(1) {
        blocks.push(Block::Heading(section.heading().to_owned()));
        match section {
            Section::KeyJudgements => {
                blocks.push(Block::Paragraph("We assess as follows:".to_owned()));
                for kj in &content.key_judgements {
                    let confidence = match kj.confidence {
                        Confidence::Unspecified => String::new(),
                        c => format!(" ({} confidence)", c.as_str()),
                    };
                    blocks.push(Block::Item(
                        format!("{}.", kj.letter),
                        format!("{}{confidence}", plain(&kj.text)),
                    ));
                }
            }
            Section::Disclaimer => blocks.push(Block::Paragraph(content.disclaimer.clone())),
            Section::Introduction | Section::Recruitment | Section::Demand | Section::Money => {
                let text = match section {
                    Section::Introduction => &content.introduction,
                    Section::Recruitment => &content.recruitment,
                    Section::Demand => &content.demand,
                    _ => &content.money,
                };
                for p in paragraphs(text) {
                    for line in p.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        match line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
                            Some(item) => blocks.push(Block::Item("-".to_owned(), plain(item))),
                            None => blocks.push(Block::Paragraph(plain(line))),
                        }
                    }
                }
            }
            Section::RedFlagIndicators => {
                for item in &content.red_flag_indicators {
                    blocks.push(Block::Item("-".to_owned(), plain(item)));
                }
            }
            Section::InformationRequirements => {
                for (i, item) in content.information_requirements.iter().enumerate() {
                    blocks.push(Block::Item(format!("{}.", i + 1), plain(item)));
                }
            }
            Section::HeadlineCards => {
                for card in &content.headline_cards {
                    let pillar = match card.pillar {
                        Pillar::Recruitment => "Recruitment:",
                        Pillar::Demand => "Demand:",
                        Pillar::Money => "Money:",
                        Pillar::Unspecified => "-",
                    };
                    blocks.push(Block::Item(
                        pillar.to_owned(),
                        format!("{}. {}", plain(&card.headline), plain(&card.detail)),
                    ));
                }
            }
            Section::TitleBlock => {}
        }
    }
    if !content.uncertainty_flags.is_empty() {
        blocks.push(Block::Heading("UNCERTAINTY".to_owned()));
        for flag in &content.uncertainty_flags {
            blocks.push(Block::Item(
                "-".to_owned(),
                format!(
                    "{} ({} confidence): {}",
                    flag.field_path,
                    flag.confidence.as_str(),
                    flag.reason
                ),
            ));
        }
    }
    if !content.citations.is_empty() {
        blocks.push(Block::Heading("SOURCES".to_owned()));
        for c in &content.citations {
            let url = if c.source.url.is_empty() {
                String::new()
            } else {
                format!(" {}", c.source.url)
            };
            blocks.push(Block::Item(
                format!("[{}]", c.id),
                format!("{}{url}", c.source.label),
            ));
        }
    }
    blocks
}

/// The blocks as markdown.
pub fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut in_list = false;
    for block in blocks {
        let is_item = matches!(block, Block::Item(..));
        if in_list && !is_item {
            out.push('\n');
        }
        in_list = is_item;
        match block {
            Block::Title(t) => out.push_str(&format!("# {t}\n\n")),
            Block::Meta(m) => out.push_str(&format!("*{m}*\n\n")),
            Block::Heading(h) => out.push_str(&format!("## {h}\n\n")),
            Block::Paragraph(p) => out.push_str(&format!("{p}\n\n")),
            Block::Item(marker, text) => out.push_str(&format!("{marker} {text}\n")),
        }
    }
    out.trim_end().to_owned() + "\n"
}

/// Widths of Helvetica's printable ASCII glyphs (1/1000 em), from its AFM.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// A character in WinAnsi (CP1252), `?` when it has no code there.
fn winansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u32 as u8,
        '€' => 0x80,
        '…' => 0x85,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        _ => b'?',
    }
}

fn text_width(text: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c {
            ' '..='~' => u32::from(HELVETICA[(c as usize) - 32]),
            _ => 556,
        })
        .sum();
    let scale = if bold { 1.06 } else { 1.0 };
    units as f32 * size / 1000.0 * scale
}

/// Greedy word wrap to `width` points.
fn wrap(text: &str, size: f32, bold: bool, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if !line.is_empty() && text_width(&candidate, size, bold) > width {
            lines.push(std::mem::take(&mut line));
            line = word.to_owned();
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 64.0;

struct PdfLine {
    bold: bool,
    size: f32,
    x: f32,
    text: String,
    space_before: f32,
}

/// The blocks as a PDF (A4, Helvetica).
pub fn pdf(blocks: &[Block]) -> anyhow::Result<Vec<u8>> {
    let body = PAGE_WIDTH - 2.0 * MARGIN;
    let mut lines: Vec<PdfLine> = Vec::new();
    let mut push = |text: &str, bold: bool, size: f32, indent: f32, space_before: f32| {
        for (i, line) in wrap(text, size, bold, body - indent)
            .into_iter()
            .enumerate()
        {
            lines.push(PdfLine {
                bold,
                size,
                x: MARGIN + indent,
                text: line,
                space_before: if i == 0 { space_before } else { 0.0 },
            });
        }
    };
    for block in blocks {
        match block {
            Block::Title(t) => push(t, true, 18.0, 0.0, 0.0),
            Block::Meta(m) => push(m, false, 10.0, 0.0, 4.0),
            Block::Heading(h) => push(h, true, 13.0, 0.0, 16.0),
            Block::Paragraph(p) => push(p, false, 10.5, 0.0, 6.0),
            Block::Item(marker, text) => push(&format!("{marker} {text}"), false, 10.5, 14.0, 4.0),
        }
    }

    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let regular = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let bold = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica-Bold", "Encoding" => "WinAnsiEncoding",
    });
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold },
    });
    let mut kids: Vec<Object> = Vec::new();
    let mut operations: Vec<Operation> = Vec::new();
    let mut y = PAGE_HEIGHT - MARGIN;
    let flush = |doc: &mut Document,
                 operations: &mut Vec<Operation>,
                 kids: &mut Vec<Object>|
     -> anyhow::Result<()> {
        let content = PdfContent {
            operations: std::mem::take(operations),
        };
        let stream = doc.add_object(Stream::new(dictionary! {}, content.encode()?));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => stream,
        });
        kids.push(page.into());
        Ok(())
    };
    for line in &lines {
        let advance = line.space_before + line.size * 1.35;
        if y - advance < MARGIN && !operations.is_empty() {
            flush(&mut doc, &mut operations, &mut kids)?;
            y = PAGE_HEIGHT - MARGIN;
        }
        y -= advance;
        let bytes: Vec<u8> = line.text.chars().map(winansi).collect();
        operations.extend([
            Operation::new("BT", vec![]),
            Operation::new(
                "Tf",
                vec![if line.bold { "F2" } else { "F1" }.into(), line.size.into()],
            ),
            Operation::new("Td", vec![line.x.into(), y.into()]),
            Operation::new("Tj", vec![Object::String(bytes, StringFormat::Literal)]),
            Operation::new("ET", vec![]),
        ]);
    }
    if !operations.is_empty() || kids.is_empty() {
        flush(&mut doc, &mut operations, &mut kids)?;
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), PAGE_WIDTH.into(), PAGE_HEIGHT.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.compress();
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn run(text: &str, bold: bool, half_points: u32) -> String {
    format!(
        "<w:r><w:rPr>{}<w:sz w:val=\"{half_points}\"/></w:rPr><w:t xml:space=\"preserve\">{}</w:t></w:r>",
        if bold { "<w:b/>" } else { "" },
        xml_escape(text)
    )
}

fn paragraph(runs: &str, space_before: u32, indent: u32) -> String {
    let indent = if indent > 0 {
        format!("<w:ind w:left=\"{indent}\" w:hanging=\"360\"/>")
    } else {
        String::new()
    };
    format!(
        "<w:p><w:pPr><w:spacing w:before=\"{space_before}\" w:after=\"120\"/>{indent}</w:pPr>{runs}</w:p>"
    )
}

/// The blocks as a DOCX package.
pub fn docx(blocks: &[Block]) -> anyhow::Result<Vec<u8>> {
    let mut body = String::new();
    for block in blocks {
        body.push_str(&match block {
            Block::Title(t) => paragraph(&run(t, true, 36), 0, 0),
            Block::Meta(m) => paragraph(&run(m, false, 20), 0, 0),
            Block::Heading(h) => paragraph(&run(h, true, 26), 240, 0),
            Block::Paragraph(p) => paragraph(&run(p, false, 21), 0, 0),
            Block::Item(marker, text) => paragraph(
                &format!(
                    "{}{}",
                    run(&format!("{marker} "), true, 21),
                    run(text, false, 21)
                ),
                0,
                360,
            ),
        });
    }
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}\
<w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/><w:pgMar w:top=\"1280\" w:right=\"1280\" w:bottom=\"1280\" w:left=\"1280\" w:header=\"708\" w:footer=\"708\" w:gutter=\"0\"/></w:sectPr>\
</w:body></w:document>"
    );
    let content_types = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
<Default Extension=\"xml\" ContentType=\"application/xml\"/>\
<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
</Types>";
    let rels = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/>\
</Relationships>";
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in [
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", rels),
        ("word/document.xml", document.as_str()),
    ] {
        zip.start_file(name, options)?;
        zip.write_all(data.as_bytes())?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let text = "word ".repeat(200);
        let lines = wrap(&text, 10.0, false, 200.0);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| text_width(l, 10.0, false) <= 200.0));
        assert_eq!(
            lines.iter().map(|l| l.split(' ').count()).sum::<usize>(),
            200
        );
    }

    #[test]
    fn winansi_maps_typographic_punctuation() {
        assert_eq!(winansi('–'), 0x96);
        assert_eq!(winansi('é'), 0xe9);
        assert_eq!(winansi('漢'), b'?');
        assert_eq!(xml_escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
