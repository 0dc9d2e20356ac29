//! The bench's output: one row of the table per measurement, printed, written
//! to `bench.json` and, when matplotlib is available, drawn to `bench.png`.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::tools::Tools;
use crate::{cmd, paths};

/// One row of the table.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    pub(super) number: u8,
    pub(super) what: &'static str,
    pub(super) a: f64,
    pub(super) b: f64,
    pub(super) unit: &'static str,
    pub(super) ratio: f64,
    pub(super) goal: &'static str,
    pub(super) met: bool,
    /// A line of context under its row: no goal, not counted as met or
    /// missed.
    #[serde(default)]
    pub(super) context: bool,
    pub(super) samples_a: Vec<f64>,
    pub(super) samples_b: Vec<f64>,
}

impl Row {
    /// This row as a line of context (no goal).
    pub(super) fn context(mut self) -> Self {
        self.context = true;
        self.met = true;
        self
    }
}

/// The median of `values` (NaN when there are none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A row from A and B samples: their medians, their ratio, and whether the
/// ratio `met` the goal.
pub(super) fn row(
    number: u8,
    what: &'static str,
    samples_a: Vec<f64>,
    samples_b: Vec<f64>,
    unit: &'static str,
    goal: &'static str,
    met: impl Fn(f64) -> bool,
) -> Row {
    let (a, b) = (median(&samples_a), median(&samples_b));
    let ratio = a / b;
    Row {
        number,
        what,
        a,
        b,
        unit,
        ratio,
        goal,
        met: met(ratio),
        context: false,
        samples_a,
        samples_b,
    }
}

/// How a run was made, for the machine line of the table.
pub(super) struct RunInfo {
    /// The profile of the measured binaries.
    pub profile: &'static str,
    /// Rounds of each A/B pair.
    pub rounds: usize,
    /// Measured seconds of each load run.
    pub seconds: f64,
}

/// Prints the table and writes `bench.json`, `bench.md` (the README's
/// table) and `bench.png` into `bench_dir`.
pub(super) fn report(
    rows: &[Row],
    run: &RunInfo,
    bench_dir: &std::path::Path,
    tools: &Tools,
) -> Result<()> {
    let mut text = format!(
        "\n{:<3} {:<70} {:>12} {:>12} {:>10} {:>10}  {}\n",
        "#", "measurement (A / B)", "A", "B", "ratio", "goal", "met"
    );
    for row in rows {
        text.push_str(&format!(
            "{:<3} {:<70} {:>12.1} {:>12.1} {:>10.3} {:>10}  {}   ({})\n",
            row.number,
            row.what,
            row.a,
            row.b,
            row.ratio,
            row.goal,
            match (row.context, row.met) {
                (true, _) => "—",
                (false, true) => "yes",
                (false, false) => "NO",
            },
            row.unit
        ));
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
    let machine = BTreeMap::from([
        (
            "cpus",
            std::thread::available_parallelism()
                .map_or(0, usize::from)
                .to_string(),
        ),
        ("cpu", cpu_model()),
        (
            "kernel",
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        ("memory_gib", memory_gib()),
        ("postgres", postgres_version()),
        (
            "date",
            cmd::output(std::process::Command::new("date").args(["-u", "+%F"]))
                .map(|d| d.trim().to_owned())
                .unwrap_or_default(),
        ),
    ]);
    let json = bench_dir.join("bench.json");
    let document = serde_json::json!({
        "machine": machine,
        "run": { "profile": run.profile, "rounds": run.rounds, "seconds": run.seconds },
        "rows": rows,
    });
    fs::write(&json, serde_json::to_vec_pretty(&document)?)?;
    say!("    wrote {}", json.display());
    let md = bench_dir.join("bench.md");
    fs::write(&md, markdown(&document))?;
    say!("    wrote {}", md.display());
    let png = bench_dir.join("bench.png");
    match chart(tools, &json, &png) {
        Ok(()) => say!("    wrote {}", png.display()),
        Err(err) => say!("    no chart: {err:#}"),
    }
    Ok(())
}

/// Where README.md's generated table starts and ends.
const README_START: &str = "<!-- bench-table:start (cargo xtask bench --readme) -->";
const README_END: &str = "<!-- bench-table:end -->";

/// Replaces README.md's table (between its markers) with the one rendered
/// from `bench_json`.
pub(super) fn write_readme(bench_json: &std::path::Path) -> Result<()> {
    let document: serde_json::Value =
        serde_json::from_slice(&fs::read(bench_json).with_context(|| {
            format!(
                "cannot read {} (run `cargo xtask bench` first)",
                bench_json.display()
            )
        })?)?;
    let readme_path = paths::workspace_root().join("README.md");
    let readme = fs::read_to_string(&readme_path)?;
    let replaced = replace_between(&readme, README_START, README_END, &markdown(&document))
        .with_context(|| format!("README.md has no `{README_START}` … `{README_END}` block"))?;
    fs::write(&readme_path, replaced)?;
    say!(
        "    README.md's table rewritten from {}",
        bench_json.display()
    );
    Ok(())
}

/// `text` with what lies between `start` and `end` replaced by `body`.
fn replace_between(text: &str, start: &str, end: &str, body: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let to = from + text[from..].find(end)?;
    Some(format!("{}\n{body}{}", &text[..from], &text[to..]))
}

/// The machine line and the table, as markdown, from a `bench.json`.
pub(super) fn markdown(document: &serde_json::Value) -> String {
    let machine = &document["machine"];
    let run = &document["run"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let mut out = format!(
        "`cargo xtask bench` on {}, {} CPUs ({}), {} GiB, Linux {}, Postgres {}, `{}` profile, \
         medians of {} alternated rounds of {} s:\n\n",
        text(&machine["date"]),
        text(&machine["cpus"]),
        text(&machine["cpu"]),
        text(&machine["memory_gib"]),
        text(&machine["kernel"]),
        text(&machine["postgres"]),
        text(&run["profile"]),
        run["rounds"].as_u64().unwrap_or(0),
        run["seconds"].as_f64().unwrap_or(0.0),
    );
    out.push_str("| # | A / B | A | B | ratio | goal | met |\n| --- | --- | ---: | ---: | ---: | --- | --- |\n");
    for row in document["rows"].as_array().into_iter().flatten() {
        let unit = row["unit"].as_str().unwrap_or("");
        let (unit_a, unit_b) = unit.split_once(" / ").unwrap_or((unit, unit));
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        let met = if row["context"].as_bool().unwrap_or(false) {
            "(context)"
        } else if row["met"].as_bool().unwrap_or(false) {
            "yes"
        } else {
            "no"
        };
        out.push_str(&format!(
            "| {} | {} | {} {unit_a} | {} {unit_b} | {} | {} | {met} |\n",
            row["number"],
            row["what"].as_str().unwrap_or(""),
            figure(number(&row["a"])),
            figure(number(&row["b"])),
            figure(number(&row["ratio"])),
            row["goal"].as_str().unwrap_or(""),
        ));
    }
    out
}

/// A number as the table shows it: thousands separated from 1,000 up,
/// three significant digits below.
fn figure(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    if value.abs() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if value < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn memory_gib() -> String {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| format!("{:.0}", kib / f64::from(1u32 << 20)))
        .unwrap_or_default()
}

fn postgres_version() -> String {
    cmd::output(std::process::Command::new("psql").args([
        "-Atq",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        "SHOW server_version",
    ]))
    .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
    .unwrap_or_default()
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default()
}

/// Draws the ratios against their goals with matplotlib (installed into the
/// tools venv on first use; the bench is not part of CI).
fn chart(tools: &Tools, json: &std::path::Path, png: &std::path::Path) -> Result<()> {
    let python = tools.python();
    if !cmd::succeeds(std::process::Command::new(&python).args(["-c", "import matplotlib"])) {
        cmd::run_to_stderr(std::process::Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "matplotlib==3.10.7",
        ]))?;
    }
    cmd::run_to_stderr(
        std::process::Command::new(&python)
            .arg(paths::workspace_root().join("xtask").join("bench_chart.py"))
            .arg(json)
            .arg(png),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_grouped_or_kept_to_three_digits() {
        assert_eq!(figure(52_504.2), "52,504");
        assert_eq!(figure(1_193.0), "1,193");
        assert_eq!(figure(794.4), "794");
        assert_eq!(figure(16.64), "16.6");
        assert_eq!(figure(1.503), "1.50");
        assert_eq!(figure(0.0664), "0.066");
        assert_eq!(figure(f64::NAN), "—");
    }

    #[test]
    fn the_table_names_the_machine_and_marks_context_lines() {
        let document = serde_json::json!({
            "machine": {"date": "2026-12-06", "cpus": "2", "cpu": "AMD EPYC", "memory_gib": "24",
                        "kernel": "6.1", "postgres": "15.20"},
            "run": {"profile": "perf", "rounds": 5, "seconds": 3.0},
            "rows": [
                {"number": 6, "what": "GetReport / its SQL", "a": 3000.0, "b": 4000.0, "unit": "per s",
                 "ratio": 0.75, "goal": "≥ 0.6", "met": true, "context": false},
                {"number": 6, "what": "(context) GetReport / -S", "a": 3000.0, "b": 45000.0, "unit": "per s",
                 "ratio": 0.0667, "goal": "—", "met": true, "context": true},
                {"number": 4, "what": "idle", "a": 5000.0, "b": 97.5, "unit": "conns / MiB",
                 "ratio": 52504.0, "goal": "≥ 100,000", "met": false, "context": false},
            ],
        });
        let table = markdown(&document);
        assert!(table.starts_with("`cargo xtask bench` on 2026-12-06, 2 CPUs (AMD EPYC), 24 GiB"));
        assert!(table.contains(
            "| 6 | GetReport / its SQL | 3,000 per s | 4,000 per s | 0.750 | ≥ 0.6 | yes |"
        ));
        assert!(table.contains("| 0.067 | — | (context) |"));
        assert!(table.contains("| 5,000 conns | 97.5 MiB | 52,504 | ≥ 100,000 | no |"));
        let readme = format!("intro\n{README_START}\nold table\n{README_END}\nafter\n");
        let replaced = replace_between(&readme, README_START, README_END, &table).expect("markers");
        assert!(replaced.contains("intro\n"));
        assert!(replaced.contains("after\n"));
        assert!(!replaced.contains("old table"));
        assert!(replace_between("no markers", README_START, README_END, "x").is_none());
    }
}
