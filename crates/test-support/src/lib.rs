//! Helpers for kiln's tests (a dev-dependency only; never shipped).
//!
//! - [`registry::TestRegistry`]: a real `docker-registry` on 127.0.0.1.
//! - [`git::GitDaemon`]: bare git repositories served by `git daemon` on
//!   127.0.0.1.
//! - [`TempRoot`]: a private, throw-away store root.
//! - [`busybox_rootfs`] / [`busybox_rootfs_tar`]: a minimal Linux root file
//!   system made from the host's statically linked busybox (Debian package
//!   `busybox-static`, installed by `scripts/install-test-deps.sh`), with
//!   every applet as a symlink, `/etc/passwd` (root, alice 1000:1000 with
//!   home `/home/alice`, nobody), `/etc/group` (alice is also in `users`
//!   100 and `wheel` 10), and the usual empty directories. Docker Hub is not
//!   reachable here, so this is the base image of every test that needs one.
//! - [`snapshot`]: normalized image snapshots (file system listing and
//!   config fields of a docker archive, relative to the busybox base), the
//!   same code for BuildKit's images and kiln's.
//! - [`corpus`]: the Dockerfile corpus in `testdata/build/` (cases, their
//!   flags, context preparation); `src/bin/corpus-tool.rs` drives it from
//!   `testdata/build/regen-expected.sh`.
//!
//! Panics (these are test helpers) with a message saying what to install
//! when busybox is missing.
//!
//! # Example
//!
//! ```no_run
//! let root = kiln_test_support::TempRoot::new();
//! let tar = kiln_test_support::busybox_rootfs_tar();
//! assert!(!tar.is_empty());
//! # let _ = root.path();
//! ```
#![deny(missing_docs)]
// Test helpers: a failed fixture should stop the test with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]
// A fixture that fails to start says why on stderr (test output).
#![allow(clippy::print_stderr)]

pub mod git;
pub mod registry;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_oci::layer::{CreateOptions, create_layer};

pub mod corpus;
pub mod snapshot;

/// Where Debian's `busybox-static` puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The mtime every file of the base rootfs gets, so its layer digest is the
/// same on every machine with the same busybox.
pub const FIXED_EPOCH: u64 = 1_700_000_000;

/// A temporary directory to use as a kiln store root (`--root`); removed on
/// drop.
pub struct TempRoot {
    dir: tempfile::TempDir,
}

impl TempRoot {
    /// A fresh empty root.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("kiln-root-")
                .tempdir()
                .expect("creating a temporary store root"),
        }
    }
    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempRoot {
    fn default() -> Self {
        Self::new()
    }
}

/// The path of a statically linked busybox, or a panic saying how to get one.
pub fn busybox() -> PathBuf {
    let p = PathBuf::from(BUSYBOX);
    assert!(
        p.is_file(),
        "{BUSYBOX} not found: install the Debian package busybox-static \
         (bash scripts/install-test-deps.sh)"
    );
    p
}

/// Fill `dir` with a busybox root file system.
pub fn busybox_rootfs(dir: &Path) {
    let bb = busybox();
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "tmp",
        "root",
        "home/alice",
        "dev",
        "proc",
        "sys",
        "var/tmp",
        "run",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(dir.join("var/tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(dir.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::copy(&bb, dir.join("bin/busybox")).unwrap();
    fs::set_permissions(dir.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let list = Command::new(&bb)
        .arg("--list-full")
        .output()
        .expect("running busybox --list-full");
    assert!(list.status.success(), "busybox --list-full failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        let link = dir.join(applet);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(target, &link).unwrap();
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\nusers:x:100:alice\nwheel:x:10:alice\nalice:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    fs::write(dir.join("etc/hostname"), "kiln\n").unwrap();
}

/// A busybox root file system as an uncompressed, reproducible layer tar.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    let opts = CreateOptions {
        source_date_epoch: Some(FIXED_EPOCH),
        overlay_upper: false,
    };
    let (bytes, _) = create_layer(tmp.path(), Vec::new(), &opts).unwrap();
    bytes
}

/// Write [`busybox_rootfs_tar`] to `path` (for `kiln import PATH`).
pub fn write_busybox_rootfs_tar(path: &Path) {
    fs::write(path, busybox_rootfs_tar()).unwrap();
}
