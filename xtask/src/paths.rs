//! Where things live: the workspace root, the cargo target directory and the
//! dev stack's state directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where `cargo xtask bench` keeps its stack (instead of the dev stack's
/// directory) and which profile its binaries come from; unset for every
/// other task.
static BENCH_LAYOUT: OnceLock<(PathBuf, &'static str)> = OnceLock::new();

/// Points [`dev_dir`] at `stack_dir` and [`treven_binary`] at `profile`, for
/// the rest of this process (the bench runs its own stack beside a dev one).
pub fn use_stack_layout(stack_dir: PathBuf, profile: &'static str) {
    let _ = BENCH_LAYOUT.set((stack_dir, profile));
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the root; the path is fixed at compile time,
    // which is right because the binary is always built from this clone.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the root when
/// relative) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The dev stack's files: `state.json`, `moto.log`, `pids.json`.
pub fn dev_dir() -> PathBuf {
    match BENCH_LAYOUT.get() {
        Some((dir, _)) => dir.clone(),
        None => target_dir().join("dev"),
    }
}

/// The `treven` binary that `cargo build -p treven` produces.
pub fn treven_binary() -> PathBuf {
    target_dir().join(profile_dir()).join("treven")
}

/// The target subdirectory of the binaries in use (`debug`, or the bench's).
pub fn profile_dir() -> &'static str {
    BENCH_LAYOUT.get().map_or("debug", |(_, profile)| profile)
}

/// The provisioning script run by the venv's Python.
pub fn dev_aws_script() -> PathBuf {
    workspace_root().join("xtask").join("dev_aws.py")
}
