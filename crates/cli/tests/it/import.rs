//! `kiln import`: compressions, changes, bad input, a crash mid-import.

use std::io::Write;
use std::process::Stdio;

use kiln_test_support::{TempRoot, busybox_rootfs_tar};

use crate::support::{kiln, output};

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new(kind)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{kind} is needed by this test: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let t = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    t.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn import_every_compression_gives_the_same_layer() {
    let root = TempRoot::new();
    let tar = busybox_rootfs_tar();
    let dir = tempfile::tempdir().unwrap();
    let mut layers = Vec::new();
    for (i, kind) in ["cat", "gzip", "bzip2", "xz", "zstd"].iter().enumerate() {
        let data = if *kind == "cat" {
            tar.clone()
        } else {
            compress(kind, &tar)
        };
        let path = dir.path().join(format!("rootfs{i}"));
        std::fs::write(&path, data).unwrap();
        let (out, stdout, stderr) = output(
            kiln(root.path())
                .arg("import")
                .arg(&path)
                .arg(format!("img:{kind}")),
        );
        assert!(out.status.success(), "{kind}: {stderr}");
        assert!(stdout.trim().starts_with("sha256:"), "{stdout}");
        let (_, json, _) = output(kiln(root.path()).args(["inspect", &format!("img:{kind}")]));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        layers.push(v[0]["RootFS"]["Layers"][0].as_str().unwrap().to_owned());
    }
    layers.dedup();
    assert_eq!(
        layers.len(),
        1,
        "every compression must yield the same diff id"
    );
}

#[test]
fn import_from_stdin_with_changes() {
    let root = TempRoot::new();
    let mut child = kiln(root.path())
        .args([
            "import",
            "-c",
            r#"CMD ["sh"]"#,
            "-c",
            "ENV A=1 B=2",
            "--change",
            "WORKDIR /srv",
            "-c",
            "EXPOSE 80",
            "-",
            "bb",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&busybox_rootfs_tar())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let (_, json, _) = output(kiln(root.path()).args(["inspect", "bb"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = &v[0]["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(c["Env"], serde_json::json!(["A=1", "B=2"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert!(c["ExposedPorts"]["80/tcp"].is_object());
    assert_eq!(v[0]["RepoTags"], serde_json::json!(["bb:latest"]));
}

#[test]
fn bad_input_is_a_clear_error_and_stores_nothing() {
    let root = TempRoot::new();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, vec![0x42u8; 5000]).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("truncated");
    let tar = busybox_rootfs_tar();
    std::fs::write(&truncated, &tar[..tar.len() / 2 + 100]).unwrap();
    let badgz = dir.path().join("bad.gz");
    let mut gz = compress("gzip", &tar);
    let n = gz.len() / 2;
    gz[n] ^= 0xff;
    std::fs::write(&badgz, gz).unwrap();
    for (path, what) in [
        (&garbage, "tar"),
        (&empty, "no files"),
        (&truncated, ""),
        (&badgz, ""),
    ] {
        let (out, _, stderr) = output(kiln(root.path()).arg("import").arg(path).arg("x"));
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(stderr.contains("error"), "{stderr}");
        assert!(stderr.contains(what), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (out, _, stderr) = output(kiln(root.path()).args(["import", "/nonexistent.tar"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent.tar"), "{stderr}");
    let (out, _, stderr) = output(
        kiln(root.path())
            .arg("import")
            .arg(&garbage)
            .arg("Bad:Name"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("must be lowercase"), "{stderr}");
    let (out, _, stderr) =
        output(kiln(root.path()).args(["import", "-c", "RUN rm -rf /", "/dev/null"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("RUN cannot be changed"), "{stderr}");
    let (_, stdout, _) = output(kiln(root.path()).args(["images", "-q"]));
    assert_eq!(stdout, "");
    assert_eq!(
        std::fs::read_dir(root.path().join("oci/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn kill_during_import_leaves_a_consistent_store() {
    let root = TempRoot::new();
    let tar = busybox_rootfs_tar();
    // One good image first, timed: the kills below are spread over the
    // length of a whole import, so that they land in every phase (start-up,
    // streaming the layer, fsync and rename of blobs, the database
    // transaction, the index.json rewrite) whatever the machine's speed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootfs.tar");
    std::fs::write(&path, &tar).unwrap();
    let started = std::time::Instant::now();
    assert!(
        output(kiln(root.path()).arg("import").arg(&path).arg("good"))
            .0
            .status
            .success()
    );
    let whole = started.elapsed();
    // An import killed while it streams (half the tar sent, then SIGKILL).
    let mut child = kiln(root.path())
        .args(["import", "-", "half"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(whole);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    // Imports killed at twelve moments from start to (just past) the end;
    // after each, the store must open and list without error.
    let mut finished = 0;
    for step in 1..=12u32 {
        let mut c = kiln(root.path())
            .arg("import")
            .arg(&path)
            .arg(format!("k{step}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole * step / 11);
        let _ = c.kill(); // SIGKILL
        if c.wait().unwrap().success() {
            finished += 1;
        }
        let (out, _, stderr) = output(kiln(root.path()).args(["images", "-q"]));
        assert!(
            out.status.success(),
            "store unusable after a kill at {step}/11 of an import: {stderr}"
        );
    }
    assert!(
        finished < 12,
        "no import was interrupted; the kills came too late"
    );
    // The store opens, lists, verifies every image it lists, and prunes.
    let (out, stdout, stderr) = output(kiln(root.path()).args(["images", "--format", "json"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("\"good\"") || stdout.contains("\"Repository\":\"good\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("half"),
        "a killed import must not be listed: {stdout}"
    );
    let (_, ids, _) = output(kiln(root.path()).args(["images", "-q"]));
    for id in ids.lines() {
        let sink = tempfile::NamedTempFile::new().unwrap();
        let (out, _, stderr) = output(
            kiln(root.path())
                .args(["save", "-o"])
                .arg(sink.path())
                .arg(id),
        );
        assert!(
            out.status.success(),
            "image {id} is not readable after the crash: {stderr}"
        );
    }
    let (out, _, stderr) = output(kiln(root.path()).args(["prune"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0,
        "prune clears leftovers"
    );
    let index = std::fs::read_to_string(root.path().join("oci/index.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&index).unwrap();
    for m in v["manifests"].as_array().unwrap() {
        let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert!(
            root.path().join("oci/blobs/sha256").join(hex).is_file(),
            "index.json names a missing manifest"
        );
    }
}
