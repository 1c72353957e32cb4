use crate::support::{kiln, output, output_with_stdin};

fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("Dockerfile");
    std::fs::write(&path, text).expect("writing the test Dockerfile");
    path
}

#[test]
fn json_follows_the_documented_schema() {
    let root = tempfile::tempdir().unwrap();
    let file = write(
        root.path(),
        "# syntax=docker/dockerfile:1\n# base\nFROM --platform=$P alpine AS b\nRUN <<EOF\necho hi\nEOF\nONBUILD COPY --from=b a /\n",
    );
    let (out, stdout, stderr) = output(kiln(root.path()).args(["parse", "--json"]).arg(&file));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["escape"], "\\");
    assert_eq!(v["directives"]["syntax"], "docker/dockerfile:1");
    let ins = v["instructions"].as_array().unwrap();
    assert_eq!(ins.len(), 3);
    assert_eq!(ins[0]["cmd"], "from");
    assert_eq!(ins[0]["flags"][0], "--platform=$P");
    assert_eq!(ins[0]["args"], serde_json::json!(["alpine", "AS", "b"]));
    assert_eq!(ins[0]["comments"], serde_json::json!(["base"]));
    assert_eq!(ins[1]["heredocs"][0]["content"], "echo hi\n");
    assert_eq!(ins[1]["heredocs"][0]["expand"], true);
    assert_eq!(
        (ins[1]["start_line"].as_u64(), ins[1]["end_line"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(ins[2]["next"]["cmd"], "copy");
    assert_eq!(ins[2]["next"]["flags"][0], "--from=b");
    assert_eq!(ins[2]["next"]["start_line"], 0);
}

#[test]
fn stdin_is_read_for_dash() {
    let root = tempfile::tempdir().unwrap();
    let out = output_with_stdin(
        kiln(root.path()).args(["parse", "-"]),
        b"FROM scratch\nCMD [\"a\", \"b\"]\n",
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("(from \"scratch\")"), "{stdout}");
    assert!(stdout.contains("(cmd \"a\" \"b\")"), "{stdout}");
}

#[test]
fn lenient_layer_keeps_unknown_instructions_and_flags() {
    let root = tempfile::tempdir().unwrap();
    let file = write(root.path(), "FROM a b c d\nCOPPY --bogus x y\n");
    let (out, stdout, stderr) = output(kiln(root.path()).args(["parse", "--json"]).arg(&file));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["instructions"][1]["cmd"], "coppy");
    assert_eq!(v["instructions"][1]["flags"][0], "--bogus");
    assert_eq!(v["instructions"][1]["args"], serde_json::json!([""]));
}

#[test]
fn errors_show_file_line_and_caret() {
    let root = tempfile::tempdir().unwrap();
    let file = write(root.path(), "FROM alpine\nENV FOO\n");
    let (out, _, stderr) = output(kiln(root.path()).args(["parse"]).arg(&file));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error: ENV must have two arguments"),
        "{stderr}"
    );
    assert!(stderr.contains("Dockerfile:2:1"), "{stderr}");
    assert!(stderr.contains("2 | ENV FOO\n"), "{stderr}");
    assert!(stderr.contains("^^^^^^^"), "{stderr}");
}

#[test]
fn unterminated_heredoc_is_rejected_without_panic() {
    let root = tempfile::tempdir().unwrap();
    let file = write(root.path(), "FROM alpine\nRUN <<EOF\necho\n");
    let (out, _, stderr) = output(kiln(root.path()).args(["parse", "--json"]).arg(&file));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unterminated heredoc"), "{stderr}");
}

#[test]
fn missing_file_names_the_path() {
    let root = tempfile::tempdir().unwrap();
    let (out, _, stderr) = output(kiln(root.path()).args(["parse", "/nonexistent/Dockerfile"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/Dockerfile"), "{stderr}");
}
