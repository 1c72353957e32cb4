//! `-` as the context: a tar in each compression, or a plain Dockerfile.

use std::io::Write as _;

use kiln_context::{ContextError, DockerfileSpec, Opener};

/// A tar with a Dockerfile, a file in a directory and a symlink.
fn context_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("Dockerfile", b"FROM scratch\nCOPY . /\n", 0o644);
    add("app/run.sh", b"#!/bin/sh\n", 0o755);
    add("build/other.Dockerfile", b"FROM other\n", 0o644);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "app/link", "run.sh").unwrap();
    b.into_inner().unwrap()
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "plain" => data.to_vec(),
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bzip2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::encode_all(data, 1).unwrap(),
        other => panic!("{other}"),
    }
}

#[test]
fn stdin_tar_in_each_compression() {
    let cache = tempfile::tempdir().unwrap();
    let tar = context_tar();
    for kind in ["plain", "gzip", "bzip2", "xz", "zstd"] {
        let input = compress(kind, &tar);
        let ctx = Opener::new(cache.path())
            .open("-", input.as_slice())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(ctx.dockerfile().text, b"FROM scratch\nCOPY . /\n", "{kind}");
        let listed: Vec<String> = ctx
            .walk()
            .unwrap()
            .iter()
            .map(|e| e.rel.display().to_string())
            .collect();
        assert_eq!(
            listed,
            [
                "Dockerfile",
                "app",
                "app/link",
                "app/run.sh",
                "build",
                "build/other.Dockerfile"
            ],
            "{kind}"
        );
        let run = ctx.root().join("app/run.sh");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&run).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755, "{kind}");
        assert_eq!(
            std::fs::read_link(ctx.root().join("app/link")).unwrap(),
            std::path::Path::new("run.sh")
        );
        // The same content hashes the same whatever the compression.
        let sum = ctx
            .checksum(&["app"], &kiln_context::SourceOptions::default(), false)
            .unwrap();
        assert!(sum.as_str().starts_with("sha256:"));
    }
    // The extracted contexts are temporary: nothing stays in the cache.
    let left: Vec<_> = std::fs::read_dir(cache.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stdin_tar_with_dockerfile_path_inside() {
    let cache = tempfile::tempdir().unwrap();
    let ctx = Opener::new(cache.path())
        .dockerfile(DockerfileSpec::Path("build/other.Dockerfile".into()))
        .open("-", context_tar().as_slice())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM other\n");
    let err = Opener::new(cache.path())
        .dockerfile(DockerfileSpec::Path("../../etc/passwd".into()))
        .open("-", context_tar().as_slice())
        .unwrap_err();
    assert!(matches!(err, ContextError::Escape { .. }), "{err}");
}

#[test]
fn stdin_dockerfile_means_an_empty_context() {
    let cache = tempfile::tempdir().unwrap();
    let ctx = Opener::new(cache.path())
        .open("-", b"FROM scratch\nCMD [\"x\"]\n".as_slice())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM scratch\nCMD [\"x\"]\n");
    assert!(ctx.walk().unwrap().is_empty());
    let err = ctx
        .checksum(&["x"], &kiln_context::SourceOptions::default(), false)
        .unwrap_err();
    assert!(matches!(err, ContextError::NotFound { .. }), "{err}");
    // `-f -` and `-` at once can't work.
    let err = Opener::new(cache.path())
        .dockerfile(DockerfileSpec::Text(b"FROM x".to_vec()))
        .open("-", b"".as_slice())
        .unwrap_err();
    assert!(err.to_string().contains("both"), "{err}");
}

/// A raw ustar header for `name` (bypassing the tar crate's checks).
fn raw_entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn expect_archive_error(input: &[u8], want: &str) {
    let cache = tempfile::tempdir().unwrap();
    let err = Opener::new(cache.path()).open("-", input).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ContextError::Archive { .. }), "{text}");
    assert!(text.starts_with("context archive from stdin: "), "{text}");
    assert!(text.contains(want), "want {want:?} in {text}");
    let left: Vec<_> = std::fs::read_dir(cache.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "a failed extraction left {left:?}");
}

#[test]
fn bad_archives_are_clear_errors() {
    let mut evil = raw_entry("../evil", b'0', "", b"x");
    evil.extend([0u8; 1024]);
    expect_archive_error(&evil, "entry `../evil` points outside the context");

    // A symlink to outside, then a file written through it.
    let mut through = raw_entry("out", b'2', "/tmp", b"");
    through.extend(raw_entry("out/pwned", b'0', "", b"x"));
    through.extend([0u8; 1024]);
    expect_archive_error(&through, "not a directory");

    let mut hard = raw_entry("h", b'1', "../../etc/passwd", b"");
    hard.extend([0u8; 1024]);
    expect_archive_error(&hard, "hard link `h` points outside the context");

    let gz = compress("gzip", &context_tar());
    expect_archive_error(&gz[..gz.len() / 2], "corrupt or truncated");
    let mut corrupt = gz.clone();
    for b in &mut corrupt[20..60] {
        *b ^= 0x5a;
    }
    expect_archive_error(&corrupt, "gzip data is corrupt or truncated");
    let tar = context_tar();
    expect_archive_error(&tar[..700], "corrupt or truncated");
}

#[test]
fn a_dockerfile_symlink_out_of_the_archive_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "Dockerfile", "/etc/passwd").unwrap();
    let err = Opener::new(cache.path())
        .open("-", b.into_inner().unwrap().as_slice())
        .unwrap_err();
    assert!(matches!(err, ContextError::Escape { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`Dockerfile` is outside the build context"),
        "{err}"
    );
}
