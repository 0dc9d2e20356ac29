//! `cargo xtask bench --perf`: a system-wide `perf record` while each row
//! measures, so a row that misses its goal can say what limits it.
//!
//! Samples `cpu-clock` at 999 Hz on every CPU (the hardware counters are
//! not available on every machine; release code has no frame pointers, so
//! no call graphs) into `<bench>/perf/row-N.data`, then splits the samples
//! by process and by kind of work with `xtask/bench/perf_split.py` into
//! `row-N.txt`. Rows 1 and 2 share one recording (`row-1`); rows 6 and 7
//! hold both halves of their pairs (`PHASE=A` or `B` splits them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::paths;
use crate::process::{GroupChild, StopSignals};

/// One row's recording; [`Recording::finish`] stops it and writes the split.
pub(super) struct Recording {
    perf: Option<GroupChild>,
    data: PathBuf,
}

impl Recording {
    /// Starts recording row `row` into `bench_dir/perf` when `enabled`;
    /// otherwise a recording that does nothing.
    pub(super) async fn start(enabled: bool, bench_dir: &Path, row: u8) -> Result<Self> {
        let dir = bench_dir.join("perf");
        let data = dir.join(format!("row-{row}.data"));
        if !enabled {
            return Ok(Self { perf: None, data });
        }
        std::fs::create_dir_all(&dir)?;
        let mut command = Command::new("perf");
        command
            .args(["record", "-a", "-e", "cpu-clock", "-F", "999", "-o"])
            .arg(&data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let perf = GroupChild::spawn("perf record", &mut command)
            .context("--perf needs `perf` (Debian: linux-perf)")?;
        // perf is sampling once it has opened its events.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Self {
            perf: Some(perf),
            data,
        })
    }

    /// Stops the recording (perf writes its file on SIGTERM) and writes the
    /// split next to it.
    pub(super) async fn finish(self, signals: &mut StopSignals) -> Result<()> {
        let Some(mut perf) = self.perf else {
            return Ok(());
        };
        perf.stop(Duration::from_secs(30), signals).await?;
        let split = std::process::Command::new("python3")
            .arg(paths::workspace_root().join("xtask/bench/perf_split.py"))
            .arg(&self.data)
            .args(["services", "gateway", "agents"])
            .output()
            .context("cannot run perf_split.py")?;
        let text = self.data.with_extension("txt");
        std::fs::write(&text, &split.stdout)?;
        say!("    perf: {} ({})", text.display(), self.data.display());
        Ok(())
    }
}
