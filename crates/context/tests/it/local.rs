//! Local-directory contexts: Dockerfile lookup, ignore-file precedence,
//! the filtered walk, checksums and path safety.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use kiln_context::{Context, ContextError, DockerfileSpec, EntryKind, SourceOptions};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "Dockerfile", "FROM scratch\n");
    write(r, "src/main.c", "int main;");
    write(r, "src/util.c", "int util;");
    write(r, "src/util.h", "int util();");
    write(r, "docs/guide.md", "guide");
    write(r, "docs/README.md", "readme");
    write(r, "node_modules/a/index.js", "a");
    write(r, "node_modules/keep/index.js", "keep");
    write(r, "other.txt", "other");
    dir
}

fn open(dir: &Path) -> Context {
    Context::from_dir(dir, DockerfileSpec::Default).unwrap()
}

fn sum(ctx: &Context, sources: &[&str]) -> String {
    ctx.checksum(sources, &SourceOptions::default(), false)
        .unwrap()
        .to_string()
}

#[test]
fn dockerfile_lookup_like_docker() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let err = Context::from_dir(r, DockerfileSpec::Default).unwrap_err();
    assert!(matches!(err, ContextError::NoDockerfile { .. }), "{err}");
    assert!(err.to_string().contains("Dockerfile"), "{err}");
    // The lowercase name is the fallback.
    write(r, "dockerfile", "FROM lower\n");
    assert_eq!(open(r).dockerfile().text, b"FROM lower\n");
    write(r, "Dockerfile", "FROM upper\n");
    assert_eq!(open(r).dockerfile().text, b"FROM upper\n");
    // -f may lie outside the context.
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "app.Dockerfile", "FROM outside\n");
    let ctx = Context::from_dir(
        r,
        DockerfileSpec::Path(outside.path().join("app.Dockerfile")),
    )
    .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM outside\n");
    // -f -: text given.
    let ctx = Context::from_dir(r, DockerfileSpec::Text(b"FROM stdin\n".to_vec())).unwrap();
    assert_eq!(
        (
            ctx.dockerfile().name.as_str(),
            ctx.dockerfile().path.is_none()
        ),
        ("-", true)
    );
    // A directory as the Dockerfile, a missing -f, a missing context.
    std::fs::create_dir(r.join("d")).unwrap();
    let err = Context::from_dir(r, DockerfileSpec::Path(r.join("d"))).unwrap_err();
    assert!(
        matches!(err, ContextError::DockerfileNotAFile { .. }),
        "{err}"
    );
    let err = Context::from_dir(r, DockerfileSpec::Path(r.join("nope"))).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = Context::from_dir(r.join("missing"), DockerfileSpec::Default).unwrap_err();
    assert!(matches!(err, ContextError::NotADirectory { .. }), "{err}");
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tree();
    let r = dir.path();
    write(r, ".dockerignore", "docs\n");
    write(r, "build/app.Dockerfile", "FROM scratch\n");
    write(r, "build/app.Dockerfile.dockerignore", "src\n");
    let ctx = open(r);
    assert!(ctx.is_excluded(Path::new("docs/guide.md")));
    assert!(!ctx.is_excluded(Path::new("src/main.c")));
    let ctx = Context::from_dir(r, DockerfileSpec::Path(r.join("build/app.Dockerfile"))).unwrap();
    assert!(!ctx.is_excluded(Path::new("docs/guide.md")));
    assert!(ctx.is_excluded(Path::new("src/main.c")));
    assert!(
        ctx.ignore_file()
            .unwrap()
            .ends_with("app.Dockerfile.dockerignore")
    );
    // An invalid ignore file is an error naming it and the line.
    write(r, ".dockerignore", "ok\n[\n");
    let err = Context::from_dir(r, DockerfileSpec::Default).unwrap_err();
    assert!(err.to_string().starts_with(".dockerignore:2:"), "{err}");
}

#[test]
fn walk_applies_ignore_rules_with_reincludes() {
    let dir = tree();
    let r = dir.path();
    write(
        r,
        ".dockerignore",
        "node_modules\n!node_modules/keep\ndocs\n*.txt\n",
    );
    let ctx = open(r);
    let listed: Vec<String> = ctx
        .walk()
        .unwrap()
        .iter()
        .map(|e| {
            let mut s = e.rel.display().to_string();
            if e.kind == EntryKind::Dir {
                s.push('/');
            }
            s
        })
        .collect();
    assert_eq!(
        listed,
        [
            ".dockerignore",
            "Dockerfile",
            "node_modules/",
            "node_modules/keep/",
            "node_modules/keep/index.js",
            "src/",
            "src/main.c",
            "src/util.c",
            "src/util.h",
        ]
    );
}

#[test]
fn checksum_covers_exactly_the_selection() {
    let dir = tree();
    let r = dir.path();
    write(r, ".dockerignore", "node_modules\n");
    let ctx = open(r);
    let src = sum(&ctx, &["src"]);
    let c_files = sum(&ctx, &["src/*.c"]);
    let all = sum(&ctx, &["."]);
    // Outside the selection: no change.
    write(r, "docs/guide.md", "changed");
    write(r, "src/util.h", "changed header");
    assert_eq!(sum(&ctx, &["src/*.c"]), c_files);
    assert_ne!(sum(&ctx, &["src"]), src, "util.h is in src");
    // Excluded files never count.
    let all2 = sum(&ctx, &["."]);
    write(r, "node_modules/a/index.js", "changed");
    assert_eq!(sum(&ctx, &["."]), all2);
    assert_ne!(all, all2);
    // Content, rename, chmod, symlink retarget all change it.
    let before = sum(&ctx, &["src"]);
    write(r, "src/main.c", "int main(void);");
    let after_edit = sum(&ctx, &["src"]);
    assert_ne!(after_edit, before);
    std::fs::rename(r.join("src/main.c"), r.join("src/main2.c")).unwrap();
    let after_rename = sum(&ctx, &["src"]);
    assert_ne!(after_rename, after_edit);
    std::fs::set_permissions(
        r.join("src/main2.c"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let after_chmod = sum(&ctx, &["src"]);
    assert_ne!(after_chmod, after_rename);
    symlink("main2.c", r.join("src/link")).unwrap();
    let with_link = sum(&ctx, &["src"]);
    assert_ne!(with_link, after_chmod);
    std::fs::remove_file(r.join("src/link")).unwrap();
    symlink("util.c", r.join("src/link")).unwrap();
    assert_ne!(sum(&ctx, &["src"]), with_link, "retargeted symlink");
    // Stable when nothing changes.
    assert_eq!(sum(&ctx, &["src"]), sum(&ctx, &["src"]));
}

#[test]
fn copy_exclude_and_followed_symlinks_are_part_of_the_selection() {
    let dir = tree();
    let r = dir.path();
    let ctx = open(r);
    let opts = SourceOptions {
        exclude: vec!["*.h".to_owned()],
        ..SourceOptions::default()
    };
    let without_h = ctx.checksum(&["src"], &opts, false).unwrap();
    write(r, "src/util.h", "changed");
    assert_eq!(ctx.checksum(&["src"], &opts, false).unwrap(), without_h);
    // A source reached through a symlink reads the link too.
    symlink("src", r.join("alias")).unwrap();
    let sel = ctx
        .select(&["alias/main.c"], &SourceOptions::default(), false)
        .unwrap();
    let rels: Vec<_> = sel.entries().iter().map(|e| e.rel.clone()).collect();
    assert_eq!(rels, [Path::new("alias"), Path::new("src/main.c")]);
}

#[test]
fn sources_cannot_leave_the_context() {
    let dir = tree();
    let r = dir.path();
    let ctx = open(r);
    let opts = SourceOptions::default();
    let err = ctx.checksum(&["../etc/passwd"], &opts, false).unwrap_err();
    assert!(matches!(err, ContextError::Escape { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`../etc/passwd` is outside the build context"),
        "{err}"
    );
    symlink("/etc", r.join("abs")).unwrap();
    symlink("../../..", r.join("src/up")).unwrap();
    for source in ["abs/passwd", "src/up/etc", "src/up"] {
        let err = ctx.checksum(&[source], &opts, false).unwrap_err();
        assert!(
            matches!(err, ContextError::Escape { via: Some(_), .. }),
            "{source}: {err}"
        );
    }
    // Inside a copied directory, links are data, not followed: fine.
    assert!(ctx.checksum(&["src"], &opts, false).is_ok());
    // Lexical `..` that stays inside is fine.
    assert!(ctx.checksum(&["docs/../src/main.c"], &opts, false).is_ok());
    symlink("loop", r.join("loop")).unwrap();
    let err = ctx.checksum(&["loop"], &opts, false).unwrap_err();
    assert!(matches!(err, ContextError::SymlinkLoop { .. }), "{err}");
}

#[test]
fn missing_and_excluded_sources_are_errors() {
    let dir = tree();
    let r = dir.path();
    write(r, ".dockerignore", "docs\n");
    let ctx = open(r);
    let opts = SourceOptions::default();
    let err = ctx.checksum(&["nope.txt"], &opts, false).unwrap_err();
    assert_eq!(err.to_string(), "`nope.txt` not found in the build context");
    let err = ctx.checksum(&["docs/guide.md"], &opts, false).unwrap_err();
    assert!(
        err.to_string().contains("excluded by .dockerignore"),
        "{err}"
    );
    // A glob never sees excluded entries.
    assert!(ctx.checksum(&["docs/*"], &opts, false).is_err());
    assert!(ctx.checksum(&["docs/*"], &opts, true).is_ok());
    assert!(ctx.checksum(&["*.nothing"], &opts, false).is_err());
}

#[test]
fn file_sums_list_each_entry_read() {
    let dir = tree();
    let r = dir.path();
    symlink("main.c", r.join("src/link")).unwrap();
    let ctx = open(r);
    let sel = ctx
        .select(&["src"], &SourceOptions::default(), false)
        .unwrap();
    let sums = ctx.file_sums(&sel).unwrap();
    let paths: Vec<&str> = sums.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["src", "src/link", "src/main.c", "src/util.c", "src/util.h"]
    );
    assert_eq!(sums[1].content, "main.c");
    assert_eq!(sums[1].kind, EntryKind::Symlink);
    // sha256("int main;")
    assert!(sums[2].to_string().starts_with("file 644 "), "{}", sums[2]);
    assert!(sums[2].content.starts_with("sha256:"), "{}", sums[2]);
    assert!(sums[0].content.is_empty());
    let root = ctx
        .select(&["."], &SourceOptions::default(), false)
        .unwrap();
    assert_eq!(ctx.file_sums(&root).unwrap()[0].path, ".");
}
