//! Crafted tars that try to escape the target directory. Each must either be
//! refused with an `UnsafeEntry` error or land inside the target, and
//! nothing outside may change.

use std::fs;
use std::path::Path;

use kiln_oci::OciError;
use kiln_oci::layer::{ApplyOptions, apply_layer};

/// A raw tar header with any name bytes (the tar crate refuses `..`).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname = [0; 100];
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

struct Scene {
    _tmp: tempfile::TempDir,
    target: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// A target dir and, beside it, an `outside` dir holding `secret`.
fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    Scene {
        _tmp: tmp,
        target,
        outside,
    }
}

fn outside_untouched(s: &Scene) {
    let mut names: Vec<_> = fs::read_dir(&s.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"], "something was created outside");
    assert_eq!(fs::read(s.outside.join("secret")).unwrap(), b"secret");
    assert!(
        !fs::symlink_metadata(s.outside.join("secret"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

fn apply(s: &Scene, tar: &[u8]) -> Result<(), OciError> {
    apply_layer(tar, &s.target, &ApplyOptions::default()).map(|_| ())
}

fn assert_unsafe(r: Result<(), OciError>) {
    match r {
        Err(OciError::UnsafeEntry { .. }) => {}
        other => panic!("expected an unsafe-entry error, got {other:?}"),
    }
}

fn rel_outside(s: &Scene) -> String {
    // The absolute path of `outside`, as a symlink target.
    s.outside.display().to_string()
}

#[test]
fn dotdot_path_is_refused() {
    let s = scene();
    let mut t = Vec::new();
    raw_entry(&mut t, "../outside/evil", tar::EntryType::Regular, "", b"x");
    assert_unsafe(apply(&s, &finish(t)));
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "a/../../outside/evil",
        tar::EntryType::Regular,
        "",
        b"x",
    );
    assert_unsafe(apply(&s, &finish(t)));
    outside_untouched(&s);
}

#[test]
fn absolute_path_lands_inside() {
    let s = scene();
    let abs = format!("{}/evil", s.outside.display());
    let mut t = Vec::new();
    raw_entry(&mut t, &abs, tar::EntryType::Regular, "", b"x");
    apply(&s, &finish(t)).unwrap();
    outside_untouched(&s);
    assert!(s.target.join(abs.trim_start_matches('/')).is_file());
}

#[test]
fn write_through_absolute_symlink_stays_inside() {
    let s = scene();
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "link",
        tar::EntryType::Symlink,
        &rel_outside(&s),
        b"",
    );
    raw_entry(&mut t, "link/evil", tar::EntryType::Regular, "", b"x");
    raw_entry(
        &mut t,
        "link/secret",
        tar::EntryType::Regular,
        "",
        b"overwritten",
    );
    apply(&s, &finish(t)).unwrap();
    outside_untouched(&s);
    let inside = s.target.join(rel_outside(&s).trim_start_matches('/'));
    assert!(inside.join("evil").is_file());
}

#[test]
fn write_through_relative_symlink_is_clamped() {
    let s = scene();
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "up",
        tar::EntryType::Symlink,
        "../../../../../..",
        b"",
    );
    raw_entry(&mut t, "up/outside/evil", tar::EntryType::Regular, "", b"x");
    raw_entry(
        &mut t,
        "dir/up2",
        tar::EntryType::Symlink,
        "../../outside",
        b"",
    );
    raw_entry(&mut t, "dir/up2/evil2", tar::EntryType::Regular, "", b"x");
    apply(&s, &finish(t)).unwrap();
    outside_untouched(&s);
    assert!(s.target.join("outside/evil").is_file());
    assert!(s.target.join("outside/evil2").is_file());
}

#[test]
fn replacing_a_symlink_does_not_write_its_target() {
    let s = scene();
    let mut t = Vec::new();
    let secret = format!("{}/secret", s.outside.display());
    raw_entry(&mut t, "s", tar::EntryType::Symlink, &secret, b"");
    raw_entry(&mut t, "s", tar::EntryType::Regular, "", b"overwritten");
    apply(&s, &finish(t)).unwrap();
    outside_untouched(&s);
    assert_eq!(fs::read(s.target.join("s")).unwrap(), b"overwritten");
}

#[test]
fn hard_links_cannot_reach_outside() {
    let s = scene();
    let secret = format!("{}/secret", s.outside.display());
    // By `..`.
    let mut t = Vec::new();
    raw_entry(&mut t, "h", tar::EntryType::Link, "../outside/secret", b"");
    assert_unsafe(apply(&s, &finish(t)));
    // By absolute path (resolved inside the target, where it does not exist).
    let mut t = Vec::new();
    raw_entry(&mut t, "h", tar::EntryType::Link, &secret, b"");
    assert_unsafe(apply(&s, &finish(t)));
    // Through a symlinked directory.
    let mut t = Vec::new();
    raw_entry(&mut t, "d", tar::EntryType::Symlink, &rel_outside(&s), b"");
    raw_entry(&mut t, "h2", tar::EntryType::Link, "d/secret", b"");
    assert_unsafe(apply(&s, &finish(t)));
    // To a symlink that points outside: links the symlink itself, and
    // writing the link name afterwards replaces it.
    let mut t = Vec::new();
    raw_entry(&mut t, "sl", tar::EntryType::Symlink, &secret, b"");
    raw_entry(&mut t, "h3", tar::EntryType::Link, "sl", b"");
    raw_entry(&mut t, "h3", tar::EntryType::Regular, "", b"overwritten");
    apply(&s, &finish(t)).unwrap();
    assert!(
        fs::symlink_metadata(s.target.join("sl"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    outside_untouched(&s);
}

#[test]
fn whiteouts_cannot_delete_outside() {
    let s = scene();
    let mut t = Vec::new();
    raw_entry(&mut t, "d", tar::EntryType::Symlink, &rel_outside(&s), b"");
    raw_entry(&mut t, "d/.wh.secret", tar::EntryType::Regular, "", b"");
    raw_entry(&mut t, "d/.wh..wh..opq", tar::EntryType::Regular, "", b"");
    raw_entry(&mut t, "up", tar::EntryType::Symlink, "../..", b"");
    raw_entry(
        &mut t,
        "up/outside/.wh.secret",
        tar::EntryType::Regular,
        "",
        b"",
    );
    apply(&s, &finish(t)).unwrap();
    outside_untouched(&s);
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "../outside/.wh.secret",
        tar::EntryType::Regular,
        "",
        b"",
    );
    assert_unsafe(apply(&s, &finish(t)));
    let mut t = Vec::new();
    raw_entry(&mut t, ".wh...", tar::EntryType::Regular, "", b"");
    assert_unsafe(apply(&s, &finish(t)));
    outside_untouched(&s);
}

#[test]
fn symlink_loops_are_errors_not_hangs() {
    let s = scene();
    let mut t = Vec::new();
    raw_entry(&mut t, "a", tar::EntryType::Symlink, "b", b"");
    raw_entry(&mut t, "b", tar::EntryType::Symlink, "a", b"");
    raw_entry(&mut t, "a/x", tar::EntryType::Regular, "", b"x");
    assert_unsafe(apply(&s, &finish(t)));
}

#[test]
fn truncated_and_garbage_tars_are_errors() {
    let s = scene();
    let mut t = Vec::new();
    raw_entry(&mut t, "f", tar::EntryType::Regular, "", &[7u8; 2000]);
    t.truncate(1024);
    assert!(apply(&s, &t).is_err());
    let garbage = vec![0x55u8; 4096];
    assert!(apply(&s, &garbage).is_err());
    let _ = Path::new("");
}
