//! `kiln images`, `tag`, `rmi`, `inspect`, `history`, `prune`.

use kiln_test_support::{TempRoot, write_busybox_rootfs_tar};

use crate::support::{kiln, output};

pub fn import_busybox(root: &std::path::Path, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootfs.tar");
    write_busybox_rootfs_tar(&path);
    let (out, stdout, stderr) = output(
        kiln(root)
            .args(["import", "-c", r#"CMD ["sh"]"#])
            .arg(&path)
            .arg(name),
    );
    assert!(out.status.success(), "{stderr}");
    stdout.trim().to_owned()
}

#[test]
fn images_table_quiet_digests_json() {
    let root = TempRoot::new();
    let id = import_busybox(root.path(), "busybox");
    assert!(
        output(kiln(root.path()).args(["tag", "busybox", "localhost:5000/bb:v1"]))
            .0
            .status
            .success()
    );
    let (_, table, _) = output(kiln(root.path()).arg("images"));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY")
            && lines[0].contains("IMAGE ID")
            && lines[0].ends_with("SIZE"),
        "{table}"
    );
    assert!(
        table.contains("busybox") && table.contains("localhost:5000/bb") && table.contains("v1"),
        "{table}"
    );
    assert!(table.contains(&id[7..19]), "{table}");
    let (_, q, _) = output(kiln(root.path()).args(["images", "-q"]));
    assert_eq!(q.trim(), &id[7..19]);
    let (_, d, _) = output(kiln(root.path()).args(["images", "--digests"]));
    assert!(
        d.lines().next().unwrap().contains("DIGEST") && d.contains("sha256:"),
        "{d}"
    );
    let (_, j, _) = output(kiln(root.path()).args(["images", "--format", "json"]));
    let rows: Vec<serde_json::Value> = j
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r["Repository"] == "busybox" && r["Tag"] == "latest")
    );
    let (_, only, _) = output(kiln(root.path()).args(["images", "busybox"]));
    assert!(!only.contains("localhost:5000"), "{only}");
}

#[test]
fn rmi_untags_refuses_shared_ids_and_deletes() {
    let root = TempRoot::new();
    let id = import_busybox(root.path(), "busybox");
    output(kiln(root.path()).args(["tag", "busybox", "other"]));
    let (out, _, stderr) = output(kiln(root.path()).args(["rmi", &id[7..19]]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("must be forced"), "{stderr}");
    let (out, stdout, _) = output(kiln(root.path()).args(["rmi", "other"]));
    assert!(out.status.success());
    assert_eq!(stdout, "Untagged: other:latest\n");
    output(kiln(root.path()).args(["tag", "busybox", "other"]));
    let (out, stdout, _) = output(kiln(root.path()).args(["rmi", "-f", &id]));
    assert!(out.status.success());
    assert!(
        stdout.contains("Untagged: busybox:latest") && stdout.contains(&format!("Deleted: {id}")),
        "{stdout}"
    );
    let (_, q, _) = output(kiln(root.path()).args(["images", "-q"]));
    assert_eq!(q, "");
    assert_eq!(
        std::fs::read_dir(root.path().join("oci/blobs/sha256"))
            .unwrap()
            .count(),
        0,
        "rmi frees blobs"
    );
    let (out, _, stderr) = output(kiln(root.path()).args(["rmi", "nothere"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no such image: nothere"), "{stderr}");
}

#[test]
fn inspect_and_history() {
    let root = TempRoot::new();
    let id = import_busybox(root.path(), "busybox:1.0");
    let (out, json, _) = output(kiln(root.path()).args(["inspect", "busybox:1.0"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], id);
    assert_eq!(i["RepoTags"], serde_json::json!(["busybox:1.0"]));
    assert!(
        i["RepoDigests"][0]
            .as_str()
            .unwrap()
            .starts_with("busybox@sha256:")
    );
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert!(i["Size"].as_u64().unwrap() > 1_000_000);
    assert!(i["Created"].as_str().unwrap().starts_with("20"));
    let (out, _, stderr) = output(kiln(root.path()).args(["inspect", "busybox"]));
    assert_eq!(out.status.code(), Some(1), "busybox:latest does not exist");
    assert!(stderr.contains("no such image"), "{stderr}");
    let (out, _, stderr) = output(kiln(root.path()).args(["inspect", "UPPER"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("invalid reference format"), "{stderr}");

    let (_, h, _) = output(kiln(root.path()).args(["history", "busybox:1.0"]));
    let lines: Vec<&str> = h.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE")
            && lines[0].contains("CREATED BY")
            && lines[0].contains("COMMENT"),
        "{h}"
    );
    assert!(
        lines[1].starts_with(&id[7..19]) && lines[1].contains("kiln import"),
        "{h}"
    );
    let (_, h, _) = output(kiln(root.path()).args(["history", "--no-trunc", "busybox:1.0"]));
    assert!(h.contains(&id), "{h}");
}

#[test]
fn parallel_processes_share_a_root() {
    let root = TempRoot::new();
    import_busybox(root.path(), "base");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootfs.tar");
    write_busybox_rootfs_tar(&path);
    let mut children = Vec::new();
    for i in 0..4 {
        children.push(
            kiln(root.path())
                .arg("import")
                .arg(&path)
                .arg(format!("imp{i}"))
                .spawn()
                .unwrap(),
        );
        children.push(
            kiln(root.path())
                .args(["tag", "base", &format!("tag{i}")])
                .spawn()
                .unwrap(),
        );
        children.push(
            kiln(root.path())
                .args(["images", "-q"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let mut rm = Vec::new();
    for i in 0..4 {
        rm.push(
            kiln(root.path())
                .args(["rmi", &format!("tag{i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    rm.push(
        kiln(root.path())
            .arg("prune")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for mut c in rm {
        assert!(c.wait().unwrap().success());
    }
    let (_, j, _) = output(kiln(root.path()).args(["images", "--format", "json"]));
    let mut names: Vec<String> = j
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Repository"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["base", "imp0", "imp1", "imp2", "imp3"]);
}

#[test]
fn prune_reports_and_keeps_tagged() {
    let root = TempRoot::new();
    import_busybox(root.path(), "keep");
    import_busybox(root.path(), "gone");
    output(kiln(root.path()).args(["import", "-c", "ENV X=1", "/dev/null"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootfs.tar");
    write_busybox_rootfs_tar(&path);
    // Re-importing under the same name leaves the old image dangling.
    let (out, _, _) = output(
        kiln(root.path())
            .args(["import", "-c", "ENV Y=2"])
            .arg(&path)
            .arg("gone"),
    );
    assert!(out.status.success());
    let (out, stdout, stderr) = output(kiln(root.path()).arg("prune"));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Deleted Images:") && stdout.contains("Total reclaimed space:"),
        "{stdout}"
    );
    let (_, q, _) = output(kiln(root.path()).args(["images", "-q"]));
    assert_eq!(q.lines().count(), 2);
    let (out, _, stderr) =
        output(kiln(root.path()).args(["prune", "-a", "--keep-storage", "lots"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("invalid --keep-storage"), "{stderr}");
    let (out, _, _) = output(kiln(root.path()).args(["prune", "-a", "--keep-storage", "1GB"]));
    assert!(out.status.success());
}
