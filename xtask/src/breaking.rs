//! `buf breaking`: no change to the protos may break the wire or JSON
//! contract of a published package (buf.yaml's `FILE` rules, a superset of
//! `WIRE_JSON`: a field removed or renumbered, a JSON name changed, a type
//! changed, a file or message deleted, …).
//!
//! Compared against:
//! - [`BASELINE`], the checked-in image of the published contract. It is
//!   what works on any clone, shallow or full, and in CI, where the clone
//!   *is* `main` and comparing `main` with itself would prove nothing;
//! - the protos where HEAD's branch left `main` (their merge base), when the
//!   clone has a `main` branch and HEAD is not on it (a developer's branch
//!   or worktree): that catches the removal of something added since the
//!   baseline was last taken.
//!
//! A breaking change is made as a new package version (`treven.x.v2` next to
//! `treven.x.v1`: new files are not compared). The baseline is refreshed
//! deliberately, when a contract is published, with
//! `buf build --exclude-source-info -o proto/baseline.binpb`.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd;

/// The checked-in image of the published contract, from the repository root.
pub const BASELINE: &str = "proto/baseline.binpb";

/// What `buf breaking` is run against in `root`: the baseline, then the
/// commit where HEAD's branch left `main` (their merge base) when HEAD is
/// not on `main` itself. The merge base, not `main`'s tip: what `main`
/// gained since is not something the branch removed.
pub fn baselines(root: &Path) -> Vec<String> {
    let mut against = vec![BASELINE.to_owned()];
    let git = |args: &[&str]| {
        cmd::output(Command::new("git").current_dir(root).args(args))
            .ok()
            .map(|out| out.trim().to_owned())
            .filter(|out| !out.is_empty())
    };
    let head = git(&["rev-parse", "--verify", "-q", "HEAD^{commit}"]);
    let base = git(&["merge-base", "HEAD", "refs/heads/main"]);
    if let (Some(head), Some(base)) = (head, base)
        && head != base
    {
        against.push(format!(".git#ref={base}"));
    }
    against
}

/// Runs `buf breaking` in `root` (the buf workspace: `buf.yaml` and
/// `proto/`) against each of `against`; fails on the first breaking change.
pub fn check(buf: &Path, root: &Path, against: &[String]) -> Result<()> {
    if !root.join(BASELINE).is_file() {
        bail!("{BASELINE} is missing from {}", root.display());
    }
    for baseline in against {
        say!("    buf breaking --against {baseline}");
        let mut command = Command::new(buf);
        command
            .current_dir(root)
            .args(["breaking", "--error-format", "text", "--against"])
            .arg(baseline);
        if let Err(error) = cmd::run(&mut command) {
            bail!(
                "a breaking change to the protos against {baseline} ({error:#}): make it in a new \
                 package version (treven.x.v2) instead"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::paths;
    use crate::tools::Tools;

    /// A scratch copy of the buf workspace (buf.yaml, proto/ with the
    /// baseline) with `CreateConversationRequest.title` replaced by
    /// `replacement` (whatever options the field has today).
    fn copy_with(replacement: Option<&str>) -> tempdir::Scratch {
        let root = paths::workspace_root();
        let scratch = tempdir::Scratch::new();
        std::fs::copy(root.join("buf.yaml"), scratch.path().join("buf.yaml")).unwrap();
        copy_dir(&root.join("proto"), &scratch.path().join("proto"));
        if let Some(replacement) = replacement {
            let file = scratch.path().join("proto/treven/agents/v1/agents.proto");
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(&file, replace_title(&text, replacement)).unwrap();
        }
        scratch
    }

    /// `text` with the declaration of `title = 2` in
    /// `CreateConversationRequest` (up to its `;`, options included)
    /// replaced.
    fn replace_title(text: &str, replacement: &str) -> String {
        let message = text
            .find("message CreateConversationRequest {")
            .expect("CreateConversationRequest is in agents.proto");
        let field = message
            + text[message..]
                .find("string title = 2")
                .expect("it has `string title = 2`");
        let mut depth = 0i32;
        let mut end = field;
        for (offset, c) in text[field..].char_indices() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                ';' if depth == 0 => {
                    end = field + offset + 1;
                    break;
                }
                _ => {}
            }
        }
        assert!(end > field, "the declaration ends");
        format!("{}{replacement}{}", &text[..field], &text[end..])
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    fn breaks(replacement: Option<&str>) -> bool {
        let buf = Tools::locate().unwrap().node_bin().join("buf");
        assert!(
            cmd::is_executable(&buf),
            "{} is missing: run `cargo xtask tools`",
            buf.display()
        );
        let scratch = copy_with(replacement);
        check(&buf, scratch.path(), &[BASELINE.to_owned()]).is_err()
    }

    #[test]
    fn the_protos_as_they_are_pass() {
        assert!(!breaks(None));
    }

    #[test]
    fn removing_a_field_fails() {
        assert!(breaks(Some("reserved 2;")));
    }

    #[test]
    fn renaming_a_json_name_fails() {
        assert!(breaks(Some("string title = 2 [json_name = \"heading\"];")));
    }

    #[test]
    fn adding_a_field_passes() {
        assert!(!breaks(Some("string title = 2;\n  string subtitle = 99;")));
    }

    /// A directory removed when dropped.
    mod tempdir {
        pub struct Scratch(std::path::PathBuf);

        impl Scratch {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "treven-buf-breaking-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default()
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }

            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }

        impl Drop for Scratch {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
