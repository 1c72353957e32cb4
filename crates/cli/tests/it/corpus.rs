//! The Dockerfile corpus (`testdata/build/`) against kiln: the snapshot
//! code reads kiln's own archives the way it reads BuildKit's.

use kiln_test_support::TempRoot;
use kiln_test_support::busybox_rootfs_tar;
use kiln_test_support::corpus::BASE_IMAGE;
use kiln_test_support::snapshot::{base_tree, read_docker_archive, snapshot};

use crate::images::import_busybox;
use crate::support::{kiln, output};

/// `kiln save --format docker` of `name`, snapshotted against the base.
pub fn kiln_snapshot(root: &std::path::Path, name: &str) -> kiln_test_support::snapshot::Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let (out, _, stderr) = output(
        kiln(root)
            .args(["save", "--format", "docker", "-o"])
            .arg(&archive)
            .arg(name),
    );
    assert!(out.status.success(), "kiln save {name}: {stderr}");
    let image = read_docker_archive(&archive).unwrap();
    let base = base_tree(&busybox_rootfs_tar()).unwrap();
    snapshot(&image, &base)
}

#[test]
fn imported_base_snapshots_as_nothing_changed() {
    let root = TempRoot::new();
    import_busybox(root.path(), BASE_IMAGE);
    let snap = kiln_snapshot(root.path(), BASE_IMAGE);
    assert!(snap.filesystem.is_empty(), "{:?}", snap.filesystem);
    assert!(snap.removed.is_empty(), "{:?}", snap.removed);
    // import_busybox sets CMD ["sh"]; nothing else.
    assert_eq!(
        serde_json::to_value(&snap.config).unwrap(),
        serde_json::json!({"Cmd": ["sh"]})
    );
}
