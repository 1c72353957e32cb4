//! Running the built `kiln` binary from tests.

// Fixture helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A `kiln` command with a private store root and no inherited `KILN_ROOT`.
pub fn kiln(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env_remove("KILN_ROOT")
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null());
    cmd
}

/// Run and capture; stdout and stderr as strings.
pub fn output(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("kiln could not be started");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Run with `input` on stdin (written from a thread, so a command that
/// writes before it reads cannot block on a full pipe), capturing stdout
/// and stderr.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln could not be started");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // A command that exits without reading all of it closes the pipe.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Fails the test (never skips it) when not running as root: real
/// containers need namespaces, overlayfs and mounts.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap();
    assert_eq!(
        euid, "0",
        "this test needs root (namespaces, overlayfs, mounts); run it as root"
    );
}
