//! Applying a layer tar from arbitrary bytes (compressed or not, detected
//! by content as the store does): never a panic, never a hang, and nothing
//! outside the target directory is created, changed or deleted.
#![no_main]

use std::path::Path;

use kiln_oci::layer::{ApplyOptions, WhiteoutMode, apply_layer};
use libfuzzer_sys::fuzz_target;

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            out.push(format!(
                "{} {:?} {}",
                p.strip_prefix(dir).expect("inside").display(),
                meta.file_type(),
                meta.len()
            ));
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    // tmpfs when there is one: the target writes files on every run.
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let scene = tempfile::Builder::new()
        .prefix("kiln-fuzz-")
        .tempdir_in(base)
        .expect("tempdir");
    let target = scene.path().join("rootfs");
    let outside = scene.path().join("outside");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), b"keep").expect("write");
    std::fs::write(target.join("existing"), b"old").expect("write");
    let before: Vec<String> = listing(scene.path())
        .into_iter()
        .filter(|l| !l.starts_with("rootfs/") && !l.starts_with("rootfs "))
        .collect();

    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        // Owners from arbitrary tars would make the scene undeletable for a
        // non-root fuzzer; ownership is covered by the `_needs_root` tests.
        preserve_owner: false,
    };
    if let Ok((_, reader)) = kiln_oci::compress::decompress(data) {
        let _ = apply_layer(reader, &target, &opts);
    }

    let after: Vec<String> = listing(scene.path())
        .into_iter()
        .filter(|l| !l.starts_with("rootfs/") && !l.starts_with("rootfs "))
        .collect();
    assert_eq!(
        before, after,
        "a layer changed something outside its target"
    );
    assert_eq!(
        std::fs::read(outside.join("secret")).expect("secret survives"),
        b"keep"
    );
    // Leave the scene deletable even if the layer made read-only dirs.
    make_writable(scene.path());
});

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if let Ok(meta) = std::fs::symlink_metadata(&p) {
            if meta.is_dir() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
                make_writable(&p);
            }
        }
    }
}
