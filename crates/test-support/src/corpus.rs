//! The Dockerfile corpus in `testdata/build/`: one folder per case.
//!
//! ```text
//! testdata/build/<case>/
//!   Dockerfile        what to build (its first comment lines say what it covers)
//!   context/          the build context (optional; empty when absent)
//!   prepare.sh        run with `sh` inside the prepared context (optional):
//!                     makes what git cannot hold (modes, empty dirs, tars, fifos)
//!   flags             extra build flags, one per line (`--build-arg=A=1`,
//!                     `--target=t`); `#` starts a comment line
//!   base/Dockerfile   an image built first and tagged `corpus/<case>-base`
//!                     (optional; for ONBUILD and `--from=image`)
//!   equivalent.Dockerfile  what the reference BuildKit (dockerd 20.10) builds
//!                     instead, when Dockerfile uses newer syntax (optional)
//!   expected.json     the reference snapshot ([`crate::snapshot::Snapshot`])
//! ```
//!
//! Git keeps only 0644/0755 modes and no empty directories, and a checkout's
//! modes follow the umask; [`prepare_context`] therefore copies the context
//! with normalized modes (directories 0755, files 0755 when any execute bit
//! is set else 0644, symlinks as they are) before `prepare.sh` runs, on both
//! the reference side and kiln's.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name both `docker import` and `kiln import` give the busybox base.
pub const BASE_IMAGE: &str = "corpus/busybox:latest";

/// One corpus case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The folder name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// Extra build flags.
    pub flags: Vec<String>,
}

impl Case {
    /// `<dir>/Dockerfile`.
    pub fn dockerfile(&self) -> PathBuf {
        self.dir.join("Dockerfile")
    }
    /// `<dir>/expected.json`.
    pub fn expected(&self) -> PathBuf {
        self.dir.join("expected.json")
    }
    /// `<dir>/base/Dockerfile` when the case prebuilds a base image.
    pub fn base_dockerfile(&self) -> Option<PathBuf> {
        let p = self.dir.join("base/Dockerfile");
        p.is_file().then_some(p)
    }
    /// The tag the prebuilt base gets.
    pub fn base_tag(&self) -> String {
        format!("corpus/{}-base:latest", self.name)
    }
}

/// `testdata/build` of the workspace.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/build")
}

/// Every case under `dir`, sorted by name.
pub fn cases(dir: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let path = entry.path();
        if !path.join("Dockerfile").is_file() {
            continue;
        }
        let flags = fs::read_to_string(path.join("flags"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        out.push(Case {
            name: entry.file_name().to_string_lossy().into_owned(),
            dir: path,
            flags,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Make the build context of `case` in `out` (which must not exist).
pub fn prepare_context(case: &Case, out: &Path) {
    fs::create_dir_all(out).unwrap();
    fs::set_permissions(out, fs::Permissions::from_mode(0o755)).unwrap();
    let src = case.dir.join("context");
    if src.is_dir() {
        copy_normalized(&src, out);
    }
    let prepare = case.dir.join("prepare.sh");
    if prepare.is_file() {
        let status = Command::new("sh")
            .arg(&prepare)
            .current_dir(out)
            .status()
            .expect("running sh");
        assert!(
            status.success(),
            "{}: prepare.sh failed: {status}",
            case.name
        );
    }
}

fn copy_normalized(src: &Path, dst: &Path) {
    let mut entries: Vec<_> = fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let to = dst.join(path.file_name().unwrap());
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&path).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            fs::create_dir(&to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
            copy_normalized(&path, &to);
        } else {
            fs::copy(&path, &to).unwrap();
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}
