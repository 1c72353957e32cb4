//! Layer create → apply round trips, determinism and whiteout translation.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_oci::layer::{ApplyOptions, CreateOptions, WhiteoutMode, apply_layer, create_layer};
use kiln_oci::{Digest, DigestWriter};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc/deep")).unwrap();
    fs::write(dir.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(dir.join("etc/conf"), vec![b'x'; 100_000]).unwrap();
    fs::hard_link(dir.join("etc/conf"), dir.join("etc/conf.link")).unwrap();
    std::os::unix::fs::symlink("../bin/tool", dir.join("etc/tool")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(dir.join(&long).join(&long)).unwrap();
    fs::write(dir.join(&long).join(&long).join("f".repeat(150)), b"long").unwrap();
    std::os::unix::fs::symlink("t".repeat(200), dir.join("longlink")).unwrap();
    fs::write(dir.join("etc/deep/x"), b"").unwrap();
    let _ = xattr::set(dir.join("etc/conf"), "user.kiln", b"v");
}

fn layer_of(dir: &Path, opts: &CreateOptions) -> (Vec<u8>, Digest) {
    let (w, _) = create_layer(dir, DigestWriter::new(Vec::new()), opts).unwrap();
    let (digest, size, bytes) = w.finish();
    assert_eq!(size, bytes.len() as u64);
    (bytes, digest)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("{} bytes nlink {}", m.len(), m.nlink())
            };
            out.push(format!("{rel} {:o} {what}", m.mode() & 0o7777));
        }
    }
    out.sort();
    out
}

#[test]
fn round_trip_preserves_tree() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (bytes, _) = layer_of(src.path(), &CreateOptions::default());
    let dst = tempfile::tempdir().unwrap();
    let stats = apply_layer(&bytes[..], dst.path(), &ApplyOptions::default()).unwrap();
    assert!(stats.entries >= 10);
    assert_eq!(listing(src.path()), listing(dst.path()));
    let long = "d".repeat(120);
    assert_eq!(
        fs::read(dst.path().join(&long).join(&long).join("f".repeat(150))).unwrap(),
        b"long"
    );
    if xattr::get(src.path().join("etc/conf"), "user.kiln")
        .unwrap_or(None)
        .is_some()
    {
        assert_eq!(
            xattr::get(dst.path().join("etc/conf"), "user.kiln").unwrap(),
            Some(b"v".to_vec())
        );
    }
}

#[test]
fn layers_are_deterministic_and_pax() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    sample_tree(a.path());
    sample_tree(b.path());
    let opts = CreateOptions {
        source_date_epoch: Some(1_000_000),
        overlay_upper: false,
    };
    let (la, da) = layer_of(a.path(), &opts);
    let (lb, db) = layer_of(b.path(), &opts);
    assert_eq!(da, db);
    assert_eq!(la, lb);
    // Entries are in sorted order, hard links are links, times are clamped.
    let mut ar = tar::Archive::new(&la[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= 1_000_000);
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        if name == "etc/conf.link" {
            assert_eq!(e.header().entry_type(), tar::EntryType::Link);
        }
        names.push(name);
    }
    assert!(names.contains(&"bin/".to_owned()));
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("bin/") < pos("bin/tool") && pos("bin/tool") < pos("etc/"));
    // Long names came through PAX, not GNU long-name entries.
    assert!(!la.windows(13).any(|w| w == b"././@LongLink"));
}

#[test]
fn whiteouts_delete_on_flat_apply() {
    let lower = tempfile::tempdir().unwrap();
    fs::create_dir_all(lower.path().join("keep")).unwrap();
    fs::create_dir_all(lower.path().join("opq/sub")).unwrap();
    fs::write(lower.path().join("gone"), b"1").unwrap();
    fs::write(lower.path().join("opq/old"), b"1").unwrap();
    fs::write(lower.path().join("opq/sub/old"), b"1").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, ".wh.gone", b"");
    add_dir(&mut b, "opq/");
    add_file(&mut b, "opq/new", b"n");
    add_file(&mut b, "opq/.wh..wh..opq", b"");
    add_file(&mut b, "opq/z", b"z");
    let bytes = b.into_inner().unwrap();
    apply_layer(&bytes[..], lower.path(), &ApplyOptions::default()).unwrap();
    assert!(!lower.path().join("gone").exists());
    assert!(lower.path().join("keep").is_dir());
    let mut left: Vec<_> = fs::read_dir(lower.path().join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["new", "z"]);
}

pub fn add_file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
}

pub fn add_dir(b: &mut tar::Builder<Vec<u8>>, name: &str) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, name, &[][..]).unwrap();
}

#[test]
fn overlay_upper_round_trip_needs_root() {
    assert!(
        is_root(),
        "this test needs root (mknod of whiteout devices, trusted xattrs)"
    );
    // An overlay upper dir: a whiteout device and an opaque dir.
    let upper = tempfile::tempdir().unwrap();
    fs::create_dir(upper.path().join("opq")).unwrap();
    xattr::set(upper.path().join("opq"), "trusted.overlay.opaque", b"y").unwrap();
    fs::write(upper.path().join("opq/f"), b"f").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.path().join("deleted"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    fs::write(upper.path().join("dev-null-like"), b"").unwrap();
    let opts = CreateOptions {
        overlay_upper: true,
        ..CreateOptions::default()
    };
    let (bytes, _) = layer_of(upper.path(), &opts);
    let mut names = Vec::new();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let n = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for x in pax {
                assert!(!x.unwrap().key().unwrap().contains("overlay"));
            }
        }
        names.push(n);
    }
    assert_eq!(
        names,
        [
            ".wh.deleted",
            "dev-null-like",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/f"
        ]
    );

    // Back to an overlay lower dir: the same device and xattr.
    let snap = tempfile::tempdir().unwrap();
    let ap = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        preserve_owner: true,
    };
    apply_layer(&bytes[..], snap.path(), &ap).unwrap();
    let m = fs::symlink_metadata(snap.path().join("deleted")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &m.file_type()
    ));
    assert_eq!(m.rdev(), 0);
    assert_eq!(
        xattr::get(snap.path().join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!snap.path().join("opq/.wh..wh..opq").exists());
}

#[test]
fn ownership_modes_and_devices_needs_root() {
    assert!(is_root(), "this test needs root (chown, mknod)");
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("suid"), b"x").unwrap();
    std::os::unix::fs::chown(src.path().join("suid"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(src.path().join("suid"), fs::Permissions::from_mode(0o6755)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.path().join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.path().join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    xattr::set(
        src.path().join("suid"),
        "security.capability",
        &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap();
    let (bytes, _) = layer_of(src.path(), &CreateOptions::default());
    let dst = tempfile::tempdir().unwrap();
    apply_layer(&bytes[..], dst.path(), &ApplyOptions::default()).unwrap();
    let m = fs::metadata(dst.path().join("suid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o6755));
    assert!(
        xattr::get(dst.path().join("suid"), "security.capability")
            .unwrap()
            .is_some()
    );
    let m = fs::symlink_metadata(dst.path().join("null")).unwrap();
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(dst.path().join("fifo"))
            .unwrap()
            .file_type()
    ));
}

#[test]
fn compressed_layers_apply_after_detection() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (bytes, _) = layer_of(src.path(), &CreateOptions::default());
    for kind in [kiln_oci::Compression::Gzip, kiln_oci::Compression::Zstd] {
        let z = kiln_oci::compress::compress(kind, &bytes[..], Vec::new()).unwrap();
        let (k, mut r) = kiln_oci::compress::decompress(&z[..]).unwrap();
        assert_eq!(k, kind);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
    }
}

#[test]
fn sockets_are_skipped_and_epoch_clamps_only_newer_times() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("old"), b"o").unwrap();
    fs::write(src.path().join("new"), b"n").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.path().join("sock")).unwrap();
    let at = |secs| filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_file_mtime(src.path().join("old"), at(500)).unwrap();
    filetime::set_file_mtime(src.path().join("new"), at(2_000_000)).unwrap();
    let opts = CreateOptions {
        source_date_epoch: Some(1_000_000),
        overlay_upper: false,
    };
    let (bytes, _) = layer_of(src.path(), &opts);
    let mut seen = Vec::new();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        seen.push((name, e.header().mtime().unwrap()));
    }
    // regression guard: a socket in a build's upper dir must not become an
    // entry (docker and BuildKit skip them; tar readers choke on them).
    assert_eq!(
        seen,
        [("new".to_owned(), 1_000_000), ("old".to_owned(), 500)]
    );
}

#[test]
fn file_entries_are_byte_identical_to_the_tar_crates() {
    // Regular files are written with large reads instead of through
    // `tar::Builder::append`; the bytes (so the diff id) must be the same
    // as re-appending every raw entry with the tar crate itself.
    let src = tempfile::tempdir().unwrap();
    for (i, size) in [0usize, 1, 511, 512, 513, 100_000, (1 << 20) + 1, 3 << 20]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..size)
            .map(|j| u8::try_from((j * 7 + i) % 256).unwrap())
            .collect();
        fs::write(src.path().join(format!("f{i}")), data).unwrap();
    }
    fs::write(src.path().join("p".repeat(150)), b"pax path").unwrap();
    let _ = xattr::set(src.path().join("f3"), "user.kiln", b"v");
    let (ours, digest) = layer_of(src.path(), &CreateOptions::default());
    let mut rebuilt = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&ours[..]);
    let mut n = 0;
    for e in archive.entries().unwrap().raw(true) {
        let mut e = e.unwrap();
        let header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        rebuilt.append(&header, &data[..]).unwrap();
        n += 1;
    }
    assert!(n >= 10, "{n} raw entries");
    let rebuilt = rebuilt.into_inner().unwrap();
    assert_eq!(ours.len(), rebuilt.len());
    assert!(ours == rebuilt, "layer bytes differ from the tar crate's");
    assert_eq!(digest, Digest::sha256_of(&rebuilt));
}
