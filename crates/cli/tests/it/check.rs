use crate::support::{kiln, output};

fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("Dockerfile");
    std::fs::write(&path, text).expect("writing the test Dockerfile");
    path
}

#[test]
fn warnings_are_located_and_exit_zero() {
    let root = tempfile::tempdir().unwrap();
    let file = write(root.path(), "FROM alpine AS Build\nCMD echo hi\n");
    let (out, stdout, stderr) = output(kiln(root.path()).args(["check", "-f"]).arg(&file));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("warning: Stage name 'Build' should be lowercase (StageNameCasing)"),
        "{stdout}"
    );
    assert!(stdout.contains("Dockerfile:1:16"), "{stdout}");
    assert!(stdout.contains("1 | FROM alpine AS Build\n"), "{stdout}");
    assert!(
        stdout.contains("= help: rename the stage `build`"),
        "{stdout}"
    );
    assert!(stdout.contains("JSONArgsRecommended"), "{stdout}");
    assert!(stdout.contains("0 error(s), 2 warning(s)"), "{stdout}");
}

#[test]
fn error_directive_fails_with_json_output() {
    let root = tempfile::tempdir().unwrap();
    let file = write(
        root.path(),
        "# check=error=true;skip=JSONArgsRecommended\nFROM alpine\nMAINTAINER me\nCMD x\n",
    );
    let (out, stdout, stderr) = output(
        kiln(root.path())
            .args(["check", "--format", "json", "-f"])
            .arg(&file),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errors"], 1);
    assert_eq!(v["findings"][0]["rule"], "MaintainerDeprecated");
    assert_eq!(v["findings"][0]["severity"], "error");
    assert_eq!(v["findings"][0]["line"], 3);
}

#[test]
fn default_file_is_dockerfile_in_the_current_directory() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "FROM alpine\nCMD [\"true\"]\n");
    let (out, stdout, stderr) = output(kiln(root.path()).arg("check").current_dir(root.path()));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("no problems found"), "{stdout}");
}

#[test]
fn unknown_instruction_is_an_error_with_a_suggestion() {
    let root = tempfile::tempdir().unwrap();
    let file = write(
        root.path(),
        "FROM alpine\nRUN --mount=type=cache,target=/c \\\n  --netwrok=none make\n",
    );
    let (out, _, stderr) = output(kiln(root.path()).args(["check", "-f"]).arg(&file));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("unknown flag `--netwrok` for RUN"),
        "{stderr}"
    );
    assert!(stderr.contains("Dockerfile:3:3"), "{stderr}");
    assert!(stderr.contains("did you mean `--network`?"), "{stderr}");
}

#[test]
fn examples_check_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for name in ["hello", "multi-stage"] {
        let file = examples.join(name).join("Dockerfile");
        let (out, stdout, stderr) = output(kiln(root.path()).args(["check", "-f"]).arg(&file));
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert!(stdout.contains("no problems found"), "{name}: {stdout}");
    }
}

#[test]
fn every_error_is_reported_with_its_caret_and_exit_one() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "FROM alpine\nRUN --netwrok=none make\nCOPPY . /app\nENV x\nCMD [\"ok\"]\n",
    );
    let (out, stdout, stderr) = output(
        kiln(root.path())
            .args(["check", "-f", "Dockerfile"])
            .current_dir(root.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "error: unknown flag `--netwrok` for RUN
 --> Dockerfile:2:5
  |
2 | RUN --netwrok=none make
  |     ^^^^^^^^^^^^^^
  = help: did you mean `--network`?
error: unknown instruction: `COPPY`
 --> Dockerfile:3:1
  |
3 | COPPY . /app
  | ^^^^^
  = help: did you mean `COPY`?
error: ENV must have two arguments
 --> Dockerfile:4:1
  |
4 | ENV x
  | ^^^^^
  = help: write `ENV name=value`
Dockerfile: 3 error(s); the Dockerfile is not valid
"
    );

    let (out, stdout, stderr) = output(
        kiln(root.path())
            .args(["check", "--format", "json", "-f", "Dockerfile"])
            .current_dir(root.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errors"], 3);
    let at: Vec<(u64, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["line"].as_u64().unwrap(), f["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(at, [(2, 5), (3, 1), (4, 1)]);
    assert!(v["findings"][0]["rule"].is_null());
    assert_eq!(v["findings"][1]["fix"], "did you mean `COPY`?");
}
