//! Fixtures: a busybox root filesystem and a runtime using the helper
//! binary.

use std::path::{Path, PathBuf};

use kiln_runtime::Runtime;
use tempfile::TempDir;

/// Fail loudly when not root: these tests must run in CI, never skip.
pub fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "this test needs root (namespaces, overlayfs, mounts); run it as root"
    );
}

/// A busybox root filesystem in a new temp dir (kiln-test-support's base
/// image, unpacked).
pub fn busybox_rootfs() -> TempDir {
    let dir = TempDir::new().unwrap();
    kiln_test_support::busybox_rootfs(dir.path());
    dir
}

/// A runtime whose state lives in `state`, running containers through the
/// crate's helper binary.
pub fn runtime(state: &Path) -> Runtime {
    Runtime::open(state, Path::new(env!("CARGO_BIN_EXE_kiln-runtime-helper"))).unwrap()
}

/// `sh -c SCRIPT`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// PIDs of host processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id().cast_signed() {
            out.push(pid);
        }
    }
    out
}

/// Kills the given processes on drop (a failed test must not leave any).
pub struct KillOnDrop(pub String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in pids_with_cmdline(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The entries of a directory, sorted (names only).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// What runs of the runtime at `state` left behind: the entries of its runs
/// dir (wherever that is) and of its upper, work and volume dirs.
pub fn run_leftovers(state: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in kiln_runtime::prepare::run_entry_dirs(state) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            v.extend(entries.flatten().map(|e| e.path()));
        }
    }
    v.sort();
    v
}

/// Every path in a tree, relative, sorted.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Poll `done` every 20 ms until it holds; fail after 10 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
