//! Precision and recall of the detector over the labelled corpus in
//! `corpus/`: `dev.jsonl` (the sentences the rules were developed against)
//! and `holdout.jsonl` (written at the same time, before the detector, and
//! scored only once it was done). Run with `--nocapture` to see the tables.
//!
//! A prediction matches a labelled span when the kinds are equal and the
//! byte ranges overlap; each span and prediction matches at most once.
//! "Exact" counts matches whose ranges are identical.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use treven_pii::{PiiKind, detect};

#[derive(Debug, Deserialize)]
struct Example {
    id: String,
    text: String,
    spans: Vec<Span>,
}

#[derive(Debug, Deserialize)]
struct Span {
    kind: PiiKind,
    start: usize,
    end: usize,
    text: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    exact: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.exact += o.exact;
    }
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

/// 1.0 when there is nothing to measure (no predictions, no labels).
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

struct Report {
    name: &'static str,
    sentences: usize,
    per_kind: BTreeMap<PiiKind, Counts>,
    errors: Vec<String>,
}

impl Report {
    fn overall(&self) -> Counts {
        let mut all = Counts::default();
        for c in self.per_kind.values() {
            all.add(*c);
        }
        all
    }

    fn kind(&self, kind: PiiKind) -> Counts {
        self.per_kind.get(&kind).copied().unwrap_or_default()
    }

    fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n== {} ({} sentences) ==", self.name, self.sentences);
        let _ = writeln!(
            s,
            "| kind | labelled | predicted | TP | FP | FN | precision | recall | exact |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut rows: Vec<(String, Counts)> = self
            .per_kind
            .iter()
            .map(|(k, c)| (k.to_string(), *c))
            .collect();
        rows.push(("**overall**".to_owned(), self.overall()));
        for (k, c) in rows {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {}/{} |",
                c.tp + c.fn_,
                c.tp + c.fp,
                c.tp,
                c.fp,
                c.fn_,
                c.precision(),
                c.recall(),
                c.exact,
                c.tp
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "  {e}");
        }
        s
    }
}

fn load(file: &str) -> Vec<Example> {
    let path = format!("{}/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1)))
        .collect()
}

fn evaluate(name: &'static str, file: &str) -> Report {
    let examples = load(file);
    let mut per_kind: BTreeMap<PiiKind, Counts> = BTreeMap::new();
    let mut errors = Vec::new();
    for ex in &examples {
        let found = detect(&ex.text).unwrap_or_else(|e| panic!("{}: {e}", ex.id));
        let mut used = vec![false; found.len()];
        for span in &ex.spans {
            per_kind.entry(span.kind).or_default();
            let hit = found.iter().enumerate().position(|(i, f)| {
                !used[i] && f.kind == span.kind && f.start < span.end && span.start < f.end
            });
            let c = per_kind.entry(span.kind).or_default();
            match hit {
                Some(i) => {
                    used[i] = true;
                    c.tp += 1;
                    if found[i].start == span.start && found[i].end == span.end {
                        c.exact += 1;
                    } else {
                        errors.push(format!(
                            "{} partial {}: labelled {:?}, found {:?}",
                            ex.id, span.kind, span.text, found[i].text
                        ));
                    }
                }
                None => {
                    c.fn_ += 1;
                    errors.push(format!("{} missed {}: {:?}", ex.id, span.kind, span.text));
                }
            }
        }
        for (f, u) in found.iter().zip(&used) {
            if !u {
                per_kind.entry(f.kind).or_default().fp += 1;
                errors.push(format!("{} false {}: {:?}", ex.id, f.kind, f.text));
            }
        }
    }
    Report {
        name,
        sentences: examples.len(),
        per_kind,
        errors,
    }
}

#[test]
fn corpus_is_well_formed() {
    for file in ["dev.jsonl", "holdout.jsonl"] {
        let examples = load(file);
        assert!(!examples.is_empty(), "{file} is empty");
        for ex in &examples {
            for s in &ex.spans {
                assert_eq!(
                    ex.text.get(s.start..s.end),
                    Some(s.text.as_str()),
                    "{file} {}: span offsets do not match its text",
                    ex.id
                );
            }
        }
    }
}

/// Floors this detector honestly reaches (see README.md); a change that
/// drops below one fails here.
fn assert_floors(r: &Report, precision: f64, recall: f64) {
    let all = r.overall();
    assert!(
        all.precision() >= precision && all.recall() >= recall,
        "{}: overall precision {:.3} (floor {precision}), recall {:.3} (floor {recall}){}",
        r.name,
        all.precision(),
        all.recall(),
        r.table()
    );
}

#[test]
fn corpus_dev() {
    let r = evaluate("dev", "dev.jsonl");
    println!("{}", r.table());
    assert_floors(&r, 0.95, 0.95);
}

#[test]
fn corpus_holdout() {
    let r = evaluate("holdout", "holdout.jsonl");
    println!("{}", r.table());
    assert_floors(&r, 0.9, 0.9);
}

#[test]
fn corpus_overall_and_per_kind() {
    let mut r = evaluate("dev + holdout", "dev.jsonl");
    let h = evaluate("holdout", "holdout.jsonl");
    r.sentences += h.sentences;
    for (k, c) in h.per_kind {
        r.per_kind.entry(k).or_default().add(c);
    }
    r.errors.extend(h.errors);
    println!("{}", r.table());
    assert_floors(&r, 0.95, 0.95);
    // Issue 4: at least 0.95 recall on e-mail, phone, card, IBAN and NI.
    for kind in [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CardNumber,
        PiiKind::BankAccount,
        PiiKind::NationalId,
    ] {
        let c = r.kind(kind);
        assert!(
            c.recall() >= 0.95,
            "{kind}: recall {:.3}{}",
            c.recall(),
            r.table()
        );
    }
    // Every kind: precision at least 0.9; recall at least 0.85 (names are
    // only found in context, so they are the weakest).
    for (kind, c) in &r.per_kind {
        assert!(
            c.precision() >= 0.9,
            "{kind}: precision {:.3}{}",
            c.precision(),
            r.table()
        );
        assert!(
            c.recall() >= 0.85,
            "{kind}: recall {:.3}{}",
            c.recall(),
            r.table()
        );
    }
}
