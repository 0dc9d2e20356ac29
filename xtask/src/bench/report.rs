//! The bench's output: one row of the table per measurement, printed, written
//! to `bench.json` and, when matplotlib is available, drawn to `bench.png`.

use std::collections::BTreeMap;
use std::fs;

use anyhow::Result;
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
    pub(super) samples_a: Vec<f64>,
    pub(super) samples_b: Vec<f64>,
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
        samples_a,
        samples_b,
    }
}

/// Prints the table and writes `bench.json` and `bench.png` into `bench_dir`.
pub(super) fn report(rows: &[Row], bench_dir: &std::path::Path, tools: &Tools) -> Result<()> {
    let mut text = format!(
        "\n{:<3} {:<62} {:>12} {:>12} {:>10} {:>10}  {}\n",
        "#", "measurement (A / B)", "A", "B", "ratio", "goal", "met"
    );
    for row in rows {
        text.push_str(&format!(
            "{:<3} {:<62} {:>12.1} {:>12.1} {:>10.3} {:>10}  {}   ({})\n",
            row.number,
            row.what,
            row.a,
            row.b,
            row.ratio,
            row.goal,
            if row.met { "yes" } else { "NO" },
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
    ]);
    let json = bench_dir.join("bench.json");
    fs::write(
        &json,
        serde_json::to_vec_pretty(&serde_json::json!({ "machine": machine, "rows": rows }))?,
    )?;
    say!("    wrote {}", json.display());
    let png = bench_dir.join("bench.png");
    match chart(tools, &json, &png) {
        Ok(()) => say!("    wrote {}", png.display()),
        Err(err) => say!("    no chart: {err:#}"),
    }
    Ok(())
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
