//! `kiln save` / `kiln load`: round trips and interop with skopeo and umoci.

use std::process::Command;

use kiln_test_support::TempRoot;

use crate::images::import_busybox;
use crate::support::{kiln, output};

fn inspect(root: &std::path::Path, name: &str) -> serde_json::Value {
    let (out, json, stderr) = output(kiln(root).args(["inspect", name]));
    assert!(out.status.success(), "{stderr}");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0].take()
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is needed by this test (bash scripts/install-test-deps.sh)"
    );
    Command::new(name)
}

#[test]
fn save_load_round_trip_docker_and_oci() {
    let a = TempRoot::new();
    import_busybox(a.path(), "busybox");
    output(kiln(a.path()).args(["tag", "busybox", "localhost:5000/bb:v1"]));
    let before = inspect(a.path(), "busybox");
    let dir = tempfile::tempdir().unwrap();
    for format in ["docker", "oci"] {
        let file = dir.path().join(format!("{format}.tar"));
        let (out, _, stderr) = output(
            kiln(a.path())
                .args(["save", "--format", format, "-o"])
                .arg(&file)
                .args(["busybox", "localhost:5000/bb:v1"]),
        );
        assert!(out.status.success(), "{stderr}");
        let b = TempRoot::new();
        let (out, stdout, stderr) = output(kiln(b.path()).arg("load").arg("-i").arg(&file));
        assert!(out.status.success(), "{stderr}");
        assert!(
            stdout.contains("Loaded image: busybox:latest")
                && stdout.contains("Loaded image: localhost:5000/bb:v1"),
            "{stdout}"
        );
        let after = inspect(b.path(), "busybox");
        for key in [
            "Id",
            "Config",
            "RootFS",
            "Created",
            "Architecture",
            "Os",
            "RepoTags",
        ] {
            assert_eq!(before[key], after[key], "{format}: {key}");
        }
    }
    // To stdout, gzip-compressed by the user, back through stdin.
    let out = kiln(a.path())
        .args(["save", "busybox"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(&out.stdout[257..262], b"ustar");
    let gz = dir.path().join("x.tar.gz");
    std::fs::write(dir.path().join("x.tar"), &out.stdout).unwrap();
    assert!(
        Command::new("gzip")
            .arg("-k")
            .arg(dir.path().join("x.tar"))
            .status()
            .unwrap()
            .success()
    );
    let c = TempRoot::new();
    let (out, _, stderr) = output(
        kiln(c.path())
            .arg("load")
            .stdin(std::fs::File::open(&gz).unwrap()),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(inspect(c.path(), "busybox")["Id"], before["Id"]);
}

#[test]
fn oci_save_compresses_once() {
    let a = TempRoot::new();
    import_busybox(a.path(), "busybox");
    let dir = tempfile::tempdir().unwrap();
    let f1 = dir.path().join("1.tar");
    let f2 = dir.path().join("2.tar");
    assert!(
        output(
            kiln(a.path())
                .args(["save", "--format", "oci", "-o"])
                .arg(&f1)
                .arg("busybox")
        )
        .0
        .status
        .success()
    );
    let blobs = std::fs::read_dir(a.path().join("oci/blobs/sha256"))
        .unwrap()
        .count();
    assert!(
        output(
            kiln(a.path())
                .args(["save", "--format", "oci", "-o"])
                .arg(&f2)
                .arg("busybox")
        )
        .0
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(&f1).unwrap(),
        std::fs::read(&f2).unwrap(),
        "same bytes, from the cached gzip blob"
    );
    assert_eq!(
        std::fs::read_dir(a.path().join("oci/blobs/sha256"))
            .unwrap()
            .count(),
        blobs
    );
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    let root = TempRoot::new();
    import_busybox(root.path(), "busybox");
    let oci = root.path().join("oci");
    let out = tool("skopeo")
        .arg("inspect")
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            oci.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Os"], "linux");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let out = tool("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!(
            "{}:docker.io/library/busybox:latest",
            oci.display()
        ))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(bundle.join("config.json").is_file());
}

#[test]
fn skopeo_copies_our_docker_archive_and_we_load_its_output() {
    let root = TempRoot::new();
    import_busybox(root.path(), "busybox");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bb.tar");
    assert!(
        output(
            kiln(root.path())
                .arg("save")
                .arg("-o")
                .arg(&archive)
                .arg("busybox")
        )
        .0
        .status
        .success()
    );
    let layout = dir.path().join("layout");
    let out = tool("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:copied", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skopeo's oci-archive of it loads back into kiln.
    let oci_archive = dir.path().join("skopeo-oci.tar");
    let out = tool("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!(
            "oci-archive:{}:localhost/copied:v2",
            oci_archive.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = TempRoot::new();
    let (out, stdout, stderr) = output(kiln(other.path()).arg("load").arg("-i").arg(&oci_archive));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("localhost/copied:v2"), "{stdout}");
    assert_eq!(
        inspect(other.path(), "localhost/copied:v2")["Id"],
        inspect(root.path(), "busybox")["Id"]
    );
}

#[test]
fn load_rejects_bad_archives() {
    let root = TempRoot::new();
    let dir = tempfile::tempdir().unwrap();
    // A tar that is not an image archive.
    let plain = dir.path().join("plain.tar");
    std::fs::write(&plain, kiln_test_support::busybox_rootfs_tar()).unwrap();
    // A blob whose content does not match its name.
    let src = TempRoot::new();
    import_busybox(src.path(), "busybox");
    let good = dir.path().join("good.tar");
    assert!(
        output(
            kiln(src.path())
                .arg("save")
                .arg("-o")
                .arg(&good)
                .arg("busybox")
        )
        .0
        .status
        .success()
    );
    let mut bytes = std::fs::read(&good).unwrap();
    let pos = bytes.windows(7).position(|w| w == b"busybox").unwrap() + 600;
    bytes[pos] ^= 0x20;
    let corrupt = dir.path().join("corrupt.tar");
    std::fs::write(&corrupt, bytes).unwrap();
    for (path, want) in [
        (&plain, "not an image archive"),
        (&corrupt, "does not match its digest"),
    ] {
        let (out, _, stderr) = output(kiln(root.path()).arg("load").arg("-i").arg(path));
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    }
    let (_, q, _) = output(kiln(root.path()).args(["images", "-q"]));
    assert_eq!(q, "");
}

#[test]
fn corrupted_store_blob_is_reported_with_digest_and_image() {
    let root = TempRoot::new();
    import_busybox(root.path(), "busybox");
    let v = inspect(root.path(), "busybox");
    let layer = v["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let path = root.path().join("oci/blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let sink = tempfile::NamedTempFile::new().unwrap();
    let (out, _, stderr) = output(
        kiln(root.path())
            .args(["save", "-o"])
            .arg(sink.path())
            .arg("busybox"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("corrupted blob") && stderr.contains(&layer) && stderr.contains("busybox"),
        "{stderr}"
    );
}

#[test]
fn save_to_a_device_writes_through_it() {
    // regression: `save -o /dev/null` renamed a temp file over /dev/null.
    let root = TempRoot::new();
    import_busybox(root.path(), "busybox");
    let (out, _, stderr) = output(kiln(root.path()).args(["save", "-o", "/dev/null", "busybox"]));
    assert!(out.status.success(), "{stderr}");
    let m = std::fs::metadata("/dev/null").unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()),
        "/dev/null was replaced"
    );
}
