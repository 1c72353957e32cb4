//! File actions on layer directories: BuildKit's COPY semantics.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_solver::ops::{Chown, Copy, FileAction, FileOpError, Owner, Source, View, apply_actions};

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["ctx", "base", "out"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        Fx { _tmp: tmp, root }
    }

    fn write(&self, rel: &str, data: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn out(&self, rel: &str) -> PathBuf {
        self.root.join("out").join(rel)
    }

    fn read_out(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out(rel)).unwrap()
    }

    fn run(&self, copy: Copy) -> Result<(), FileOpError> {
        self.run_actions(&[FileAction::Copy(copy)])
    }

    fn run_actions(&self, actions: &[FileAction]) -> Result<(), FileOpError> {
        let ctx = Source {
            view: View::dir(self.root.join("ctx")),
            default_owner: Some(Owner { uid: 0, gid: 0 }),
        };
        let base = View::dir(self.root.join("base"));
        apply_actions(actions, &base, &[ctx], &self.root.join("out")).map(|_| ())
    }

    /// Relative paths of everything in `out`, sorted.
    fn out_tree(&self) -> Vec<String> {
        let mut v = Vec::new();
        walk(&self.root.join("out"), Path::new(""), &mut v);
        v.sort();
        v
    }
}

fn walk(dir: &Path, rel: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        let ft = e.file_type().unwrap();
        out.push(format!(
            "{}{}",
            r.display(),
            if ft.is_dir() { "/" } else { "" }
        ));
        if ft.is_dir() {
            walk(&e.path(), &r, out);
        }
    }
}

fn copy(sources: &[&str], dest: &str) -> Copy {
    Copy {
        from: 0,
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        dest: dest.to_owned(),
        follow_symlinks: true,
        dir_contents_only: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        create_dest_path: true,
        ..Copy::default()
    }
}

#[test]
fn destination_rules() {
    let fx = Fx::new();
    fx.write("ctx/a.txt", "a");
    fx.write("base/existing/keep", "k");
    // trailing slash: into the directory
    fx.run(copy(&["a.txt"], "/into/")).unwrap();
    assert_eq!(fx.read_out("into/a.txt"), "a");
    // no slash, not a directory: the copy's own name
    fx.run(copy(&["a.txt"], "/renamed")).unwrap();
    assert_eq!(fx.read_out("renamed"), "a");
    // no slash, an existing directory (in a lower layer): into it
    fx.run(copy(&["a.txt"], "/existing")).unwrap();
    assert_eq!(fx.read_out("existing/a.txt"), "a");
    assert!(
        !fx.out("existing/keep").exists(),
        "lower content was copied up"
    );
}

#[test]
fn directory_sources_copy_their_contents_merged() {
    let fx = Fx::new();
    fx.write("ctx/src/main.rs", "fn main() {}");
    fx.write("ctx/src/lib/mod.rs", "");
    fx.write("base/app/old", "old");
    std::fs::set_permissions(
        fx.root.join("base/app"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    fx.run(copy(&["src"], "/app")).unwrap();
    assert_eq!(
        fx.out_tree(),
        ["app/", "app/lib/", "app/lib/mod.rs", "app/main.rs"]
    );
    // The existing directory keeps its metadata in the new layer.
    assert_eq!(
        std::fs::metadata(fx.out("app")).unwrap().mode() & 0o7777,
        0o750
    );
}

#[test]
fn wildcards_and_missing_sources() {
    let fx = Fx::new();
    fx.write("ctx/a.txt", "a");
    fx.write("ctx/b.txt", "b");
    fx.write("ctx/c.md", "c");
    fx.write("ctx/sub/d.txt", "d");
    fx.run(copy(&["*.txt"], "/t/")).unwrap();
    assert_eq!(fx.out_tree(), ["t/", "t/a.txt", "t/b.txt"]);
    fx.run(copy(&["*/d.txt", "c.md"], "/u/")).unwrap();
    assert_eq!(fx.read_out("u/d.txt"), "d");
    assert_eq!(fx.read_out("u/c.md"), "c");
    // A pattern matching nothing copies nothing; a missing path is an error.
    fx.run(copy(&["*.nope"], "/v/")).unwrap();
    let err = fx.run(copy(&["missing.txt"], "/w/")).unwrap_err();
    assert_eq!(err.to_string(), "/missing.txt: no such file or directory");
}

#[test]
fn symlinks_never_escape_their_root() {
    let fx = Fx::new();
    fx.write("ctx/a.txt", "a");
    std::os::unix::fs::symlink("/etc/passwd", fx.root.join("ctx/escape")).unwrap();
    std::os::unix::fs::symlink("../../../etc/hostname", fx.root.join("ctx/up")).unwrap();
    // Absolute and `..` links resolve inside the context: not found there.
    assert!(matches!(
        fx.run(copy(&["escape"], "/x")),
        Err(FileOpError::NotFound { .. })
    ));
    assert!(matches!(
        fx.run(copy(&["up"], "/x")),
        Err(FileOpError::NotFound { .. })
    ));
    // A destination through a symlink in the base lands inside the root.
    std::fs::create_dir_all(fx.root.join("base/opt/app")).unwrap();
    std::os::unix::fs::symlink("/opt/app", fx.root.join("base/app")).unwrap();
    std::os::unix::fs::symlink("/../../../tmp", fx.root.join("base/tmp-escape")).unwrap();
    fx.run(copy(&["a.txt"], "/app/")).unwrap();
    assert_eq!(fx.read_out("opt/app/a.txt"), "a");
    fx.run(copy(&["a.txt"], "/tmp-escape/")).unwrap();
    assert_eq!(fx.read_out("tmp/a.txt"), "a");
    // Symlinks inside a copied directory stay symlinks.
    std::fs::create_dir(fx.root.join("ctx/d")).unwrap();
    std::os::unix::fs::symlink("../a.txt", fx.root.join("ctx/d/link")).unwrap();
    fx.run(copy(&["d"], "/d")).unwrap();
    assert_eq!(
        std::fs::read_link(fx.out("d/link")).unwrap(),
        Path::new("../a.txt")
    );
}

#[test]
fn chmod_applies_to_files_and_directories() {
    let fx = Fx::new();
    fx.write("ctx/dir/run.sh", "#!/bin/sh");
    std::fs::set_permissions(
        fx.root.join("ctx/dir/run.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut c = copy(&["dir"], "/bin/");
    c.chmod = Some("u+x".into());
    fx.run(c).unwrap();
    assert_eq!(
        std::fs::metadata(fx.out("bin/run.sh")).unwrap().mode() & 0o7777,
        0o744
    );
    let mut c = copy(&["dir/run.sh"], "/octal");
    c.chmod = Some("0700".into());
    fx.run(c).unwrap();
    assert_eq!(
        std::fs::metadata(fx.out("octal")).unwrap().mode() & 0o7777,
        0o700
    );
    let mut c = copy(&["dir/run.sh"], "/bad");
    c.chmod = Some("u+q".into());
    assert!(matches!(fx.run(c), Err(FileOpError::BadChmod { .. })));
}

#[test]
fn chown_by_name_resolves_in_the_destination_needs_root() {
    let fx = Fx::new();
    fx.write(
        "base/etc/passwd",
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    );
    fx.write("base/etc/group", "root:x:0:\napp:x:1001:\n");
    fx.write("ctx/a.txt", "a");
    let mut c = copy(&["a.txt"], "/new/dir/");
    c.chown = Some(Chown {
        user: "app".into(),
        group: None,
    });
    fx.run(c).unwrap();
    for p in ["new", "new/dir", "new/dir/a.txt"] {
        let m = std::fs::metadata(fx.out(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1001), "{p}");
    }
    let mut c = copy(&["a.txt"], "/x");
    c.chown = Some(Chown {
        user: "ghost".into(),
        group: None,
    });
    assert_eq!(
        fx.run(c).unwrap_err().to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
fn parents_keep_source_paths() {
    let fx = Fx::new();
    fx.write("ctx/x/y/f.txt", "f");
    fx.write("ctx/x/z/g.txt", "g");
    let mut c = copy(&["x/*/f.txt"], "/p/");
    c.parents = true;
    fx.run(c).unwrap();
    assert_eq!(fx.read_out("p/x/y/f.txt"), "f");
    // A `/./` pivot keeps only what follows it.
    let mut c = copy(&["x/./z/g.txt"], "/q/");
    c.parents = true;
    fx.run(c).unwrap();
    assert_eq!(fx.read_out("q/z/g.txt"), "g");
}

#[test]
fn exclude_patterns_leave_files_out() {
    let fx = Fx::new();
    fx.write("ctx/src/a.rs", "");
    fx.write("ctx/src/a.md", "");
    fx.write("ctx/src/docs/b.md", "");
    fx.write("ctx/src/target/x", "");
    let mut c = copy(&["src"], "/s");
    c.exclude = vec!["*.md".into(), "target".into()];
    fx.run(c).unwrap();
    assert_eq!(fx.out_tree(), ["s/", "s/a.rs", "s/docs/", "s/docs/b.md"]);
}

#[test]
fn hard_links_stay_linked() {
    let fx = Fx::new();
    fx.write("ctx/d/one", "same");
    std::fs::hard_link(fx.root.join("ctx/d/one"), fx.root.join("ctx/d/two")).unwrap();
    fx.run(copy(&["d"], "/d")).unwrap();
    let a = std::fs::metadata(fx.out("d/one")).unwrap();
    let b = std::fs::metadata(fx.out("d/two")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn add_extracts_local_tars_and_copies_look_alikes() {
    let fx = Fx::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_size(0);
    b.append_data(&mut h, "top/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_size(3);
    b.append_data(&mut h, "top/one", &b"one"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    std::fs::write(fx.root.join("ctx/a.tar.gz"), gz.finish().unwrap()).unwrap();
    // gzip's magic, but not a tar inside: copied as it is.
    std::fs::write(fx.root.join("ctx/fake.tar.gz"), [0x1f, 0x8b, 8, 0]).unwrap();
    let mut c = copy(&["a.tar.gz", "fake.tar.gz"], "/x/");
    c.unpack_archives = true;
    fx.run(c).unwrap();
    assert_eq!(fx.read_out("x/top/one"), "one");
    let top = std::fs::metadata(fx.out("x/top")).unwrap();
    assert_eq!(
        (top.mode() & 0o7777, top.uid(), top.gid()),
        (0o750, 1000, 1001)
    );
    assert_eq!(
        std::fs::read(fx.out("x/fake.tar.gz")).unwrap(),
        [0x1f, 0x8b, 8, 0]
    );
    // COPY never extracts.
    let fx2 = Fx::new();
    std::fs::write(fx2.root.join("ctx/a.tar"), &tar).unwrap();
    fx2.run(copy(&["a.tar"], "/y/")).unwrap();
    assert_eq!(std::fs::read(fx2.out("y/a.tar")).unwrap(), tar);
}

#[test]
fn mkdir_and_mkfile() {
    let fx = Fx::new();
    fx.run_actions(&[
        FileAction::Mkdir {
            path: "/work/dir".into(),
            mode: 0o755,
            parents: true,
            chown: None,
        },
        FileAction::Mkfile {
            path: "/work/dir/hello".into(),
            mode: 0o600,
            data: b"hi\n".to_vec(),
            chown: None,
        },
    ])
    .unwrap();
    assert_eq!(fx.read_out("work/dir/hello"), "hi\n");
    assert_eq!(
        std::fs::metadata(fx.out("work/dir/hello")).unwrap().mode() & 0o777,
        0o600
    );
    let err = fx
        .run_actions(&[FileAction::Mkdir {
            path: "/a/b".into(),
            mode: 0o755,
            parents: false,
            chown: None,
        }])
        .unwrap_err();
    assert!(matches!(err, FileOpError::NotFound { .. }));
}

#[test]
fn whiteouts_hide_lower_files_needs_root() {
    let fx = Fx::new();
    fx.write("base/etc/a", "a");
    fx.write("base/etc/b", "b");
    let upper = fx.root.join("upper");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    let status = std::process::Command::new("mknod")
        .arg(upper.join("etc/a"))
        .args(["c", "0", "0"])
        .status()
        .expect("mknod (coreutils) must be installed");
    assert!(status.success(), "mknod failed: this test needs root");
    let view = View::new(vec![fx.root.join("base"), upper]);
    assert!(view.lookup(Path::new("etc/a")).unwrap().is_none());
    let names: Vec<_> = view
        .read_dir(Path::new("etc"))
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn device_nodes_and_fifos_are_made_anew_and_sockets_skipped_needs_root() {
    use std::os::unix::fs::FileTypeExt as _;
    let fx = Fx::new();
    std::fs::create_dir_all(fx.root.join("ctx/dev")).unwrap();
    let mk = |rel: &str, kind, dev| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fx.root.join("ctx/dev").join(rel),
            kind,
            rustix::fs::Mode::from_raw_mode(0o640),
            dev,
        )
        .unwrap();
    };
    mk(
        "null",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 3),
    );
    mk(
        "loop9",
        rustix::fs::FileType::BlockDevice,
        rustix::fs::makedev(7, 9),
    );
    mk("pipe", rustix::fs::FileType::Fifo, 0);
    let _sock = std::os::unix::net::UnixListener::bind(fx.root.join("ctx/dev/sock")).unwrap();
    std::os::unix::fs::lchown(fx.root.join("ctx/dev/pipe"), Some(7), Some(8)).unwrap();
    let old = rustix::fs::Timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        fx.root.join("ctx/dev/pipe"),
        &rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        },
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    // Through a layer source (owners kept), as `COPY --from=stage`.
    let layer = Source {
        view: View::dir(fx.root.join("ctx")),
        default_owner: None,
    };
    let base = View::dir(fx.root.join("base"));
    // A fifo copied by opening it would block this test forever.
    apply_actions(
        &[FileAction::Copy(copy(&["dev"], "/dev/"))],
        &base,
        &[layer],
        &fx.root.join("out"),
    )
    .unwrap();
    assert_eq!(fx.out_tree(), ["dev/", "dev/loop9", "dev/null", "dev/pipe"]);
    let meta = |rel: &str| std::fs::symlink_metadata(fx.out(rel)).unwrap();
    assert!(meta("dev/null").file_type().is_char_device());
    assert_eq!(meta("dev/null").rdev(), rustix::fs::makedev(1, 3));
    assert!(meta("dev/loop9").file_type().is_block_device());
    assert_eq!(meta("dev/loop9").rdev(), rustix::fs::makedev(7, 9));
    assert!(meta("dev/pipe").file_type().is_fifo());
    assert_eq!(meta("dev/pipe").mode() & 0o7777, 0o640);
    assert_eq!((meta("dev/pipe").uid(), meta("dev/pipe").gid()), (7, 8));
    assert_eq!(meta("dev/pipe").mtime(), 1_000_000_000);
}

#[test]
fn big_files_copied_in_parallel_keep_content_and_metadata() {
    // Files of 1 MiB and up get their content copied after the walk; the
    // result must be the same as a plain copy's.
    let fx = Fx::new();
    let big = |seed: u8| -> Vec<u8> {
        (0..(3 << 20) + 123)
            .map(|i: usize| seed.wrapping_add(u8::try_from(i % 253).unwrap()))
            .collect()
    };
    for (name, seed) in [("a", 1u8), ("b", 2), ("sub/c", 3)] {
        let p = fx.root.join("ctx/big").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, big(seed)).unwrap();
    }
    std::fs::set_permissions(
        fx.root.join("ctx/big/a"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(fx.root.join("ctx/big/b"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    fx.write("ctx/other/a", "small wins");
    let mut c = copy(&["big"], "/dst/");
    c.chmod = Some("g+w".into());
    fx.run(c).unwrap();
    for (name, seed) in [("a", 1u8), ("b", 2), ("sub/c", 3)] {
        assert!(
            std::fs::read(fx.out(&format!("dst/{name}"))).unwrap() == big(seed),
            "{name}"
        );
    }
    let a = std::fs::metadata(fx.out("dst/a")).unwrap();
    // Set-id bits survive: the mode is set after the content is written.
    assert_eq!(a.mode() & 0o7777, 0o4775);
    let b = std::fs::metadata(fx.out("dst/b")).unwrap();
    assert_eq!(b.modified().unwrap(), old);
    assert_eq!(b.mode() & 0o7777, 0o664);
    // Two sources for one path: the later one wins, content and mode, even
    // though the earlier (big) one is still pending when it is replaced.
    let fx = Fx::new();
    fx.write("ctx/one/f", &"x".repeat(2 << 20));
    fx.write("ctx/two/f", "small");
    std::fs::set_permissions(
        fx.root.join("ctx/two/f"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fx.run(copy(&["one/f", "two/f"], "/d/")).unwrap();
    assert_eq!(fx.read_out("d/f"), "small");
    assert_eq!(
        std::fs::metadata(fx.out("d/f")).unwrap().mode() & 0o7777,
        0o600
    );
    // Hard links between big files stay linked and carry the content.
    let fx = Fx::new();
    fx.write("ctx/h/one", &"y".repeat(2 << 20));
    std::fs::hard_link(fx.root.join("ctx/h/one"), fx.root.join("ctx/h/two")).unwrap();
    fx.run(copy(&["h"], "/h")).unwrap();
    let one = std::fs::metadata(fx.out("h/one")).unwrap();
    let two = std::fs::metadata(fx.out("h/two")).unwrap();
    assert_eq!(one.ino(), two.ino());
    assert_eq!(fx.read_out("h/two").len(), 2 << 20);
}
