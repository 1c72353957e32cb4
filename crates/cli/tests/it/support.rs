//! Running the built `kiln` binary from tests.

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
