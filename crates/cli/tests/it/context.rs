use std::path::Path;

use crate::support::{kiln, output};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "Dockerfile", "FROM scratch\nCOPY . /app\n");
    write(
        r,
        ".dockerignore",
        "# deps\nnode_modules\n\n*.log\n!node_modules/keep\n",
    );
    write(r, "main.c", "int main;");
    write(r, "debug.log", "noise");
    write(r, "node_modules/a/index.js", "a");
    write(r, "node_modules/keep/k.js", "k");
    dir
}

#[test]
fn why_explains_with_file_line_and_rule() {
    let dir = project();
    let store = tempfile::tempdir().unwrap();
    let why = |path: &str| {
        let (out, stdout, stderr) = output(
            kiln(store.path())
                .args(["context", "why", path])
                .arg(dir.path()),
        );
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stdout
    };
    assert_eq!(
        why("node_modules"),
        "excluded by .dockerignore:2: node_modules\n"
    );
    assert_eq!(
        why("node_modules/a/index.js"),
        "excluded by .dockerignore:2: node_modules (matches its parent directory `node_modules`)\n"
    );
    assert_eq!(
        why("node_modules/keep"),
        "included: re-included by .dockerignore:5: !node_modules/keep\n"
    );
    assert_eq!(why("main.c"), "included: no rule matches\n");
    assert_eq!(why("not/there.log"), "included: no rule matches\n");

    let (out, stdout, _) = output(
        kiln(store.path())
            .args(["context", "why", "--format", "json", "x.log"])
            .arg(dir.path()),
    );
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["path"], "x.log");
    assert_eq!(v["excluded"], true);
    assert_eq!(v["rule"]["file"], ".dockerignore");
    assert_eq!(v["rule"]["line"], 4);
    assert_eq!(v["rule"]["pattern"], "*.log");
}

#[test]
fn why_with_ignorefile_and_dockerfile_specific_rules() {
    let dir = project();
    let store = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.ignore");
    std::fs::write(&other, "main.c\n").unwrap();
    let (out, stdout, _) = output(
        kiln(store.path())
            .args(["context", "why", "--ignorefile"])
            .arg(&other)
            .arg("main.c")
            .arg(dir.path()),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.starts_with("excluded by "), "{stdout}");
    assert!(stdout.ends_with("other.ignore:1: main.c\n"), "{stdout}");

    write(dir.path(), "app.Dockerfile", "FROM scratch\n");
    write(dir.path(), "app.Dockerfile.dockerignore", "main.c\n");
    let (_, stdout, _) = output(
        kiln(store.path())
            .args(["context", "why", "-f"])
            .arg(dir.path().join("app.Dockerfile"))
            .arg("main.c")
            .arg(dir.path()),
    );
    assert_eq!(
        stdout,
        "excluded by app.Dockerfile.dockerignore:1: main.c\n"
    );
}

#[test]
fn invalid_ignore_file_fails_with_a_located_message() {
    let dir = project();
    let store = tempfile::tempdir().unwrap();
    write(dir.path(), ".dockerignore", "ok\n!\n");
    for cmd in [&["context", "why", "x"][..], &["context", "ls"][..]] {
        let (out, stdout, stderr) = output(kiln(store.path()).args(cmd).arg(dir.path()));
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stdout}");
        assert!(
            stderr.contains(".dockerignore:2: invalid pattern `!`"),
            "{cmd:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn ls_lists_what_the_build_sees_with_a_total() {
    let dir = project();
    let store = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = output(kiln(store.path()).args(["context", "ls"]).arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..lines.len() - 1],
        [
            ".dockerignore",
            "Dockerfile",
            "main.c",
            "node_modules/",
            "node_modules/keep/",
            "node_modules/keep/k.js",
        ]
    );
    let total = lines[lines.len() - 1];
    assert!(
        total.starts_with("total: 4 files, 2 directories, 0 symlinks"),
        "{total}"
    );
    assert!(total.contains(".dockerignore"), "{total}");

    let (out, _, stderr) = output(
        kiln(store.path())
            .args(["context", "ls"])
            .arg(dir.path().join("missing")),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("missing"), "{stderr}");
}

#[test]
fn ls_reads_a_tar_or_a_dockerfile_from_stdin() {
    use std::io::Write as _;
    let dir = project();
    let store = tempfile::tempdir().unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-cz", "-C"])
        .arg(dir.path())
        .args(["Dockerfile", "main.c"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let run = |input: &[u8]| {
        let mut child = kiln(store.path())
            .args(["context", "ls", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&tar.stdout);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("Dockerfile\nmain.c\ntotal: 2 files"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(b"FROM scratch\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("total: 0 files"), "{stdout}");
    let mut bad = tar.stdout.clone();
    bad.truncate(bad.len() / 2);
    let (code, _, stderr) = run(&bad);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("context archive from stdin"), "{stderr}");
}
