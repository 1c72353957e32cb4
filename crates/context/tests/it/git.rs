//! Git contexts against real repositories: served by `git daemon` on
//! 127.0.0.1, and over file://. Needs the `git` program (CI installs it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_context::{ContextError, DockerfileSpec, Opener, Progress, SourceOptions};
use kiln_test_support::git::{GitDaemon, git};

/// Bare repositories under one base path, served by `git daemon` (ended by
/// PID when the server is dropped).
struct Server {
    daemon: GitDaemon,
    base: PathBuf,
    /// Commits by name.
    commits: std::collections::HashMap<&'static str, String>,
}

impl Server {
    fn url(&self, repo: &str) -> String {
        self.daemon.url(repo)
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A server per test (a static one would never be dropped, leaving its
/// daemon running): `sub.git` (a submodule) and `app.git` with history:
/// v1 (tag), main (HEAD), a `feature` branch, refs/pull/1/head.
fn start() -> Server {
    let daemon = GitDaemon::start();
    let base = daemon.base();
    let mut server = Server {
        daemon,
        base: base.clone(),
        commits: std::collections::HashMap::new(),
    };

    // The submodule.
    let work = base.parent().unwrap().join("work-sub");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    write(&work, "lib.txt", "from the submodule\n");
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "sub"]);
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "sub.git"],
    );

    // The app.
    let work = base.parent().unwrap().join("work-app");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    write(&work, "Dockerfile", "FROM scratch\nCOPY . /\n");
    write(&work, "docker/app/Dockerfile", "FROM app\n");
    write(&work, "docker/app/file.txt", "v1\n");
    write(&work, "README", "readme\n");
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    server
        .commits
        .insert("v1", git(&work, &["rev-parse", "HEAD"]));
    git(&work, &["checkout", "-q", "-b", "feature"]);
    write(&work, "feature.txt", "feature\n");
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "feature"]);
    server
        .commits
        .insert("feature", git(&work, &["rev-parse", "HEAD"]));
    git(&work, &["checkout", "-q", "main"]);
    write(&work, "docker/app/file.txt", "v2\n");
    git(
        &work,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &server.url("sub.git"),
            "vendor/sub",
        ],
    );
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "two"]);
    server
        .commits
        .insert("main", git(&work, &["rev-parse", "HEAD"]));
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "app.git"],
    );
    let bare = base.join("app.git");
    git(
        &bare,
        &["update-ref", "refs/pull/1/head", &server.commits["feature"]],
    );
    server
}

fn read(ctx: &kiln_context::Context, rel: &str) -> String {
    std::fs::read_to_string(ctx.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn git_daemon_refs_subdirs_and_submodules() {
    let s = start();
    let cache = tempfile::tempdir().unwrap();
    let open = |arg: String| Opener::new(cache.path()).open(&arg, std::io::empty());

    // HEAD, with the submodule checked out and no .git anywhere.
    let ctx = open(s.url("app.git")).unwrap();
    assert_eq!(read(&ctx, "docker/app/file.txt"), "v2\n");
    assert_eq!(read(&ctx, "vendor/sub/lib.txt"), "from the submodule\n");
    assert!(!ctx.root().join(".git").exists());
    assert!(!ctx.root().join("vendor/sub/.git").exists());
    assert_eq!(ctx.dockerfile().text, b"FROM scratch\nCOPY . /\n");

    // Branch, annotated tag, full and short commit, a pull ref.
    let ctx = open(format!("{}#feature", s.url("app.git"))).unwrap();
    assert_eq!(read(&ctx, "feature.txt"), "feature\n");
    let ctx = open(format!("{}#v1", s.url("app.git"))).unwrap();
    assert_eq!(read(&ctx, "docker/app/file.txt"), "v1\n");
    assert!(!ctx.root().join("vendor").exists());
    let ctx = open(format!("{}#{}", s.url("app.git"), s.commits["v1"])).unwrap();
    assert_eq!(read(&ctx, "docker/app/file.txt"), "v1\n");
    let ctx = open(format!(
        "{}#{}",
        s.url("app.git"),
        &s.commits["feature"][..9]
    ))
    .unwrap();
    assert_eq!(read(&ctx, "feature.txt"), "feature\n");
    let ctx = open(format!("{}#refs/pull/1/head", s.url("app.git"))).unwrap();
    assert_eq!(read(&ctx, "feature.txt"), "feature\n");

    // A subdirectory as the root; -f relative to it.
    let ctx = open(format!("{}#v1:docker/app", s.url("app.git"))).unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM app\n");
    assert_eq!(read(&ctx, "file.txt"), "v1\n");
    let ctx = Opener::new(cache.path())
        .dockerfile(DockerfileSpec::Path("docker/app/Dockerfile".into()))
        .open(&s.url("app.git"), std::io::empty())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM app\n");
    assert!(
        ctx.checksum(&["docker"], &SourceOptions::default(), false)
            .is_ok()
    );
}

#[test]
fn git_bad_refs_subdirs_and_urls_are_clear_errors() {
    let s = start();
    let cache = tempfile::tempdir().unwrap();
    let open = |arg: String| Opener::new(cache.path()).open(&arg, std::io::empty());
    let err = open(format!("{}#no-such-branch", s.url("app.git"))).unwrap_err();
    assert!(matches!(err, ContextError::Git { .. }), "{err}");
    assert!(
        err.to_string().contains("unknown ref `no-such-branch`"),
        "{err}"
    );
    assert!(err.to_string().contains(&s.url("app.git")), "{err}");

    let err = open(format!("{}#main:no/such/dir", s.url("app.git"))).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("subdirectory `no/such/dir` does not exist"),
        "{err}"
    );
    let err = open(format!("{}#main:README", s.url("app.git"))).unwrap_err();
    assert!(err.to_string().ends_with("is not a directory"), "{err}");
    let err = open(format!("{}#main:../..", s.url("app.git"))).unwrap_err();
    assert!(err.to_string().ends_with("is outside the context"), "{err}");

    let err = open(s.url("missing.git")).unwrap_err();
    assert!(matches!(err, ContextError::Git { .. }), "{err}");
    // Nothing half-made is left in the cache.
    for repo in std::fs::read_dir(cache.path().join("git")).unwrap() {
        for e in std::fs::read_dir(repo.unwrap().path()).unwrap() {
            let name = e.unwrap().file_name();
            assert!(!name.to_string_lossy().starts_with("tmp-"), "{name:?}");
        }
    }
}

#[test]
fn git_cache_is_reused_until_the_ref_moves_and_file_urls_work() {
    let s = start();
    let cache = tempfile::tempdir().unwrap();
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let ev = events.clone();
    let opener = Opener::new(cache.path()).progress(move |p| {
        let text = match p {
            Progress::Cached { .. } => "cached".to_owned(),
            Progress::Git { step, .. } => (*step).to_owned(),
            Progress::Download { .. } => "download".to_owned(),
            Progress::GitStatus { .. } => "status".to_owned(),
        };
        ev.lock().unwrap().push(text);
    });
    // A repository of its own (so the shared one never moves).
    let bare = s.base.join("moving.git");
    git(
        &s.base,
        &[
            "clone",
            "-q",
            "--bare",
            s.base.join("app.git").to_str().unwrap(),
            "moving.git",
        ],
    );
    let url = format!("file://{}#main", bare.display());
    let first = opener.open(&url, std::io::empty()).unwrap();
    assert!(events.lock().unwrap().contains(&"fetch".to_owned()));
    events.lock().unwrap().clear();
    let second = opener.open(&url, std::io::empty()).unwrap();
    assert_eq!(*events.lock().unwrap(), ["ls-remote", "cached"]);
    assert_eq!(first.root(), second.root());

    // Move main: the next open fetches the new commit.
    let work = s.base.parent().unwrap().join("work-moving");
    git(
        s.base.parent().unwrap(),
        &["clone", "-q", bare.to_str().unwrap(), "work-moving"],
    );
    write(&work, "new.txt", "new\n");
    git(&work, &["add", "new.txt"]);
    git(&work, &["commit", "-q", "-m", "new"]);
    git(&work, &["push", "-q", "origin", "main"]);
    events.lock().unwrap().clear();
    let third = opener.open(&url, std::io::empty()).unwrap();
    assert!(events.lock().unwrap().contains(&"fetch".to_owned()));
    assert_eq!(read(&third, "new.txt"), "new\n");
    assert_ne!(third.root(), first.root());
}
