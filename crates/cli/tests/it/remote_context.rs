//! `kiln build` from every context kind `docker build` accepts besides a
//! directory: git URLs (served by `git daemon` on 127.0.0.1, and over ssh
//! through a `GIT_SSH_COMMAND` wrapper like git's own test suite does),
//! tarball URLs (a small HTTP server on 127.0.0.1), and stdin (a gzip tar,
//! or a Dockerfile). The images are `FROM scratch`, so no root is needed;
//! each test asserts on the built image's files and config. Needs the
//! `git` program (scripts/install-test-deps.sh).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Output, Stdio};

use kiln_test_support::TempRoot;
use kiln_test_support::git::{GitDaemon, git, write_files};

use crate::support::{kiln, output, output_with_stdin};

/// The app repository: v1 (tag) and main, a subdirectory with its own
/// `.dockerignore` and an `alt.Dockerfile` with `alt.Dockerfile.dockerignore`.
fn app_repo(server: &GitDaemon) -> std::path::PathBuf {
    server.repo("app.git", |w| {
        write_files(
            w,
            &[
                ("README", "not in the subdir context\n"),
                (
                    "docker/app/Dockerfile",
                    "FROM scratch\nCOPY . /app/\nENV SRC=git\nLABEL kind=git\n",
                ),
                ("docker/app/.dockerignore", "*.log\n"),
                ("docker/app/file.txt", "v1\n"),
                ("docker/app/debug.log", "noise\n"),
                (
                    "docker/app/alt.Dockerfile",
                    "FROM scratch\nCOPY . /alt/\nCMD [\"alt\"]\n",
                ),
                ("docker/app/alt.Dockerfile.dockerignore", "file.txt\n"),
            ],
        );
        git(w, &["add", "-A"]);
        git(w, &["commit", "-q", "-m", "one"]);
        git(w, &["tag", "-a", "v1", "-m", "v1"]);
        write_files(w, &[("docker/app/file.txt", "v2\n")]);
        git(w, &["commit", "-q", "-am", "two"]);
    })
}

fn build(root: &Path, args: &[&str]) -> (Output, String, String) {
    output(kiln(root).args(["build", "--progress", "plain"]).args(args))
}

/// Build into a fresh directory (`--output type=local`); the directory and
/// stderr.
fn build_local(root: &Path, args: &[&str]) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let mut all = vec!["-o", dest.as_str()];
    all.extend_from_slice(args);
    let (o, stdout, stderr) = build(root, &all);
    assert!(
        o.status.success(),
        "build {args:?} failed:\n{stdout}\n{stderr}"
    );
    (out, stderr)
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()))
}

fn inspect(root: &Path, name: &str) -> serde_json::Value {
    let (out, stdout, stderr) = output(kiln(root).args(["inspect", name]));
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str::<serde_json::Value>(&stdout).unwrap()[0].clone()
}

fn image_count(root: &Path) -> usize {
    let (out, stdout, stderr) = output(kiln(root).args(["images", "-q"]));
    assert!(out.status.success(), "{stderr}");
    stdout.lines().count()
}

/// No half-made fetch is left in the context cache.
fn assert_no_leftovers(root: &Path) {
    for kind in ["git", "url"] {
        let Ok(repos) = std::fs::read_dir(root.join("contexts").join(kind)) else {
            continue;
        };
        for repo in repos {
            for e in std::fs::read_dir(repo.unwrap().path()).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with("tmp-") && !name.starts_with(".tmp"),
                    "leftover {kind}/{name}"
                );
            }
        }
    }
}

#[test]
fn build_from_a_git_url_with_ref_subdir_and_ignore_files() {
    let server = GitDaemon::start();
    app_repo(&server);
    let root = TempRoot::new();
    let url = server.url("app.git");

    // A tag and a subdirectory: the subdirectory is the context root and
    // its .dockerignore applies.
    let (dir, stderr) = build_local(
        root.path(),
        &["-t", "g:v1", &format!("{url}#v1:docker/app")],
    );
    assert_eq!(read(dir.path(), "app/file.txt"), "v1\n");
    assert!(dir.path().join("app/Dockerfile").is_file());
    assert!(
        !dir.path().join("app/debug.log").exists(),
        "excluded by .dockerignore"
    );
    assert!(!dir.path().join("app/README").exists());
    assert!(!dir.path().join("app/.git").exists());
    assert!(stderr.contains(&format!("#0 git fetch {url}")), "{stderr}");
    let img = inspect(root.path(), "g:v1");
    assert_eq!(img["Config"]["Labels"]["kind"], "git");
    let env = img["Config"]["Env"].to_string();
    assert!(env.contains("SRC=git"), "{env}");

    // The branch, with -f inside the subdirectory: its
    // <Dockerfile>.dockerignore wins over the context's .dockerignore.
    let (dir, _) = build_local(
        root.path(),
        &[
            "-t",
            "g:alt",
            "-f",
            "alt.Dockerfile",
            &format!("{url}#main:docker/app"),
        ],
    );
    assert!(
        !dir.path().join("alt/file.txt").exists(),
        "excluded by alt.Dockerfile.dockerignore"
    );
    assert_eq!(read(dir.path(), "alt/debug.log"), "noise\n");
    assert_eq!(
        inspect(root.path(), "g:alt")["Config"]["Cmd"],
        serde_json::json!(["alt"])
    );

    // The same source again comes from the cache (no fetch), same image.
    let (o, _, stderr) = build(
        root.path(),
        &["-t", "g:again", &format!("{url}#v1:docker/app")],
    );
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("#0 using the cached context"), "{stderr}");
    assert!(!stderr.contains("git fetch"), "{stderr}");
    assert_eq!(
        inspect(root.path(), "g:again")["Id"],
        inspect(root.path(), "g:v1")["Id"]
    );

    // The repository root as the context: .git is left out, unless
    // BUILDKIT_CONTEXT_KEEP_GIT_DIR says to keep it (a cache entry apart).
    let root_ctx = format!("{url}#v1");
    let (dir, _) = build_local(root.path(), &["-f", "docker/app/Dockerfile", &root_ctx]);
    assert_eq!(
        read(dir.path(), "app/README"),
        "not in the subdir context
"
    );
    assert!(!dir.path().join("app/.git").exists());
    let (dir, stderr) = build_local(
        root.path(),
        &[
            "--build-arg",
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1",
            "-f",
            "docker/app/Dockerfile",
            &root_ctx,
        ],
    );
    assert!(dir.path().join("app/.git/HEAD").is_file(), "{stderr}");
    assert!(!stderr.contains("not consumed"), "{stderr}");
    let (o, _, stderr) = build(
        root.path(),
        &[
            "--build-arg",
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=maybe",
            &root_ctx,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("expected a boolean"), "{stderr}");

    // A Dockerfile on stdin with the git context.
    let out = output_with_stdin(
        kiln(root.path())
            .args(["build", "--progress", "plain", "-t", "g:stdin", "-f", "-"])
            .arg(format!("{url}#main:docker/app")),
        b"FROM scratch\nCOPY file.txt /from-stdin.txt\nLABEL dockerfile=stdin\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        inspect(root.path(), "g:stdin")["Config"]["Labels"]["dockerfile"],
        "stdin"
    );
    assert_no_leftovers(root.path());
}

#[test]
fn bad_git_sources_are_clear_errors_and_leave_the_store_alone() {
    let server = GitDaemon::start();
    app_repo(&server);
    let root = TempRoot::new();
    let url = server.url("app.git");
    let before = image_count(root.path());

    let (o, _, stderr) = build(root.path(), &["-t", "bad", &format!("{url}#nope")]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("unknown ref `nope`"),
        "{stderr}"
    );

    let (o, _, stderr) = build(root.path(), &["-t", "bad", &format!("{url}#main:no/such")]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("subdirectory `no/such` does not exist"),
        "{stderr}"
    );

    let missing = server.url("missing.git");
    let (o, _, stderr) = build(root.path(), &["-t", "bad", &missing]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");

    // A context without the Dockerfile -f names.
    let (o, _, stderr) = build(
        root.path(),
        &["-f", "nope.Dockerfile", &format!("{url}#main:docker/app")],
    );
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`nope.Dockerfile` does not exist"),
        "{stderr}"
    );

    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(image_count(root.path()), before);
    assert_no_leftovers(root.path());
    // The store still works.
    let (dir, _) = build_local(
        root.path(),
        &["-t", "ok", &format!("{url}#main:docker/app")],
    );
    assert_eq!(read(dir.path(), "app/file.txt"), "v2\n");
}

/// A wrapper for `GIT_SSH_COMMAND`, as git's own tests fake ssh: it logs
/// the host and command git asked for, then runs the `git-upload-pack` it
/// was asked to against the bare repositories under `$FAKE_SSH_BASE`.
const FAKE_SSH: &str = r#"#!/bin/sh
host= cmd= prev=
for a in "$@"; do host=$prev; prev=$a; cmd=$a; done
printf 'host=%s port=%s cmd=%s\n' "$host" "$(echo "$*" | sed -n 's/.*-p \([0-9]*\).*/\1/p')" "$cmd" >> "$FAKE_SSH_LOG"
case "$cmd" in
  "git-upload-pack '"*"'") ;;
  *) echo "fake ssh: unexpected command: $cmd" >&2; exit 1 ;;
esac
path=${cmd#git-upload-pack \'}
path=${path%\'}
path=${path#/}
exec git upload-pack "$FAKE_SSH_BASE/$path"
"#;

#[test]
fn build_from_ssh_and_scp_like_git_urls_through_git_ssh_command() {
    let server = GitDaemon::start();
    app_repo(&server);
    let base = server.base().join("base");
    std::fs::create_dir_all(base.join("owner")).unwrap();
    git(
        &base.join("owner"),
        &[
            "clone",
            "-q",
            "--bare",
            server.base().join("app.git").to_str().unwrap(),
            "app.git",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let wrapper = tmp.path().join("fake-ssh");
    std::fs::write(&wrapper, FAKE_SSH).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let log = tmp.path().join("ssh.log");
    let root = TempRoot::new();
    let ssh_build = |arg: &str, tag: &str| {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let (o, stdout, stderr) = output(
            kiln(root.path())
                .args(["build", "--progress", "plain", "-t", tag, "-o", &dest, arg])
                .env("GIT_SSH_COMMAND", &wrapper)
                // Say it takes OpenSSH's options (-p PORT), as git's tests do.
                .env("GIT_SSH_VARIANT", "ssh")
                .env("FAKE_SSH_LOG", &log)
                .env("FAKE_SSH_BASE", &base),
        );
        assert!(o.status.success(), "{arg}:\n{stdout}\n{stderr}");
        out
    };

    let dir = ssh_build(
        "git@git.example.invalid:owner/app.git#v1:docker/app",
        "ssh:scp",
    );
    assert_eq!(read(dir.path(), "app/file.txt"), "v1\n");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .all(|l| l == "host=git@git.example.invalid port= cmd=git-upload-pack 'owner/app.git'"),
        "{text}"
    );
    std::fs::remove_file(&log).unwrap();

    let dir = ssh_build(
        "ssh://git@git.example.invalid:2222/owner/app.git#main:docker/app",
        "ssh:url",
    );
    assert_eq!(read(dir.path(), "app/file.txt"), "v2\n");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .all(|l| l
                == "host=git@git.example.invalid port=2222 cmd=git-upload-pack '/owner/app.git'"),
        "{text}"
    );
    assert!(!text.is_empty());
    assert_eq!(
        inspect(root.path(), "ssh:url")["Config"]["Labels"]["kind"],
        "git"
    );
}

/// A small HTTP server on 127.0.0.1 serving `routes` (404 for the rest)
/// until the test process ends.
fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("");
            let body = routes.iter().find(|(p, _)| *p == path).map(|(_, b)| b);
            let (status, data): (&str, &[u8]) = match body {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b""),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            );
            let _ = stream.write_all(data);
        }
    });
    format!("http://{addr}")
}

fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn tarball_context() -> Vec<u8> {
    tar_gz(&[
        (
            "build/Dockerfile",
            "FROM scratch\nCOPY src /src\nCOPY . /all/\nWORKDIR /src\nLABEL kind=tarball\n",
        ),
        ("src/hello.txt", "hello from a tarball\n"),
        ("src/junk.tmp", "junk\n"),
        (".dockerignore", "**/*.tmp\n"),
    ])
}

#[test]
fn build_from_a_tarball_url_and_bad_urls() {
    let base = serve(vec![
        ("/ctx.tar.gz", tarball_context()),
        (
            "/Dockerfile",
            b"FROM scratch\nLABEL kind=dockerfile-url\n".to_vec(),
        ),
    ]);
    let root = TempRoot::new();
    let url = format!("{base}/ctx.tar.gz");
    let (dir, stderr) = build_local(root.path(), &["-t", "t:1", "-f", "build/Dockerfile", &url]);
    assert_eq!(read(dir.path(), "src/hello.txt"), "hello from a tarball\n");
    assert!(
        !dir.path().join("src/junk.tmp").exists(),
        "excluded by .dockerignore"
    );
    assert!(dir.path().join("all/build/Dockerfile").is_file());
    assert!(
        stderr.contains(&format!("#0 downloading {url}")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("#0 fetched {url}")), "{stderr}");
    let img = inspect(root.path(), "t:1");
    assert_eq!(img["Config"]["WorkingDir"], "/src");
    assert_eq!(img["Config"]["Labels"]["kind"], "tarball");

    // JSON progress: the download is one object per line among the steps'.
    let (o, _, stderr) = output(kiln(root.path()).args([
        "build",
        "--progress",
        "json",
        "-f",
        "build/Dockerfile",
        &url,
    ]));
    assert!(o.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "context"
            && e["event"] == "download"
            && e["url"] == url.as_str()
            && e["done"] == e["total"]),
        "{stderr}"
    );

    // A URL holding a Dockerfile: an empty context.
    let (o, _, stderr) = build(root.path(), &["-t", "t:df", &format!("{base}/Dockerfile")]);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        inspect(root.path(), "t:df")["Config"]["Labels"]["kind"],
        "dockerfile-url"
    );

    let before = image_count(root.path());
    let missing = format!("{base}/missing.tar.gz");
    let (o, _, stderr) = build(root.path(), &["-t", "bad", &missing]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("404"),
        "{stderr}"
    );
    // -f naming nothing inside the tarball.
    let (o, _, stderr) = build(root.path(), &["-t", "bad", "-f", "no/Dockerfile", &url]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("build context `{url}`"))
            && stderr.contains("`no/Dockerfile` does not exist"),
        "{stderr}"
    );
    // Nothing listens there.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/ctx.tar.gz", l.local_addr().unwrap())
    };
    let (o, _, stderr) = build(root.path(), &["-t", "bad", &closed]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&closed) && stderr.contains("cannot connect"),
        "{stderr}"
    );
    assert_eq!(image_count(root.path()), before);
    assert_no_leftovers(root.path());
}

/// Pipe `input` into `kiln build ARGS -`.
fn build_stdin(root: &Path, args: &[&str], input: &[u8]) -> (Output, String) {
    let mut child = kiln(root)
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[test]
fn build_from_a_gzip_tar_or_a_dockerfile_on_stdin() {
    let root = TempRoot::new();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let (o, stderr) = build_stdin(
        root.path(),
        &["-t", "s:tar", "-f", "build/Dockerfile", "-o", &dest],
        &tarball_context(),
    );
    assert!(o.status.success(), "{stderr}");
    assert_eq!(read(out.path(), "src/hello.txt"), "hello from a tarball\n");
    assert!(!out.path().join("src/junk.tmp").exists());
    assert_eq!(
        inspect(root.path(), "s:tar")["Config"]["Labels"]["kind"],
        "tarball"
    );
    // A context extracted for one build leaves no stat cache behind.
    let stamps = std::fs::read_dir(root.path().join("cache/stat")).map_or(0, Iterator::count);
    assert_eq!(stamps, 0);

    // A Dockerfile on stdin: an empty context (COPY . copies nothing).
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let (o, stderr) = build_stdin(
        root.path(),
        &["-t", "s:df", "-o", &dest],
        b"FROM scratch\nCOPY . /ctx/\nENV FROM_STDIN=1\n",
    );
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_dir(out.path().join("ctx")).unwrap().count(),
        0
    );
    let env = inspect(root.path(), "s:df")["Config"]["Env"].to_string();
    assert!(env.contains("FROM_STDIN=1"), "{env}");

    // A truncated archive is an error naming stdin.
    let tgz = tarball_context();
    let (o, stderr) = build_stdin(root.path(), &["-t", "bad"], &tgz[..tgz.len() / 2]);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stdin"), "{stderr}");
    // Both from stdin.
    let (o, stderr) = build_stdin(root.path(), &["-f", "-"], b"FROM scratch\n");
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("standard input"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn prune_removes_cached_contexts_and_reports_the_space() {
    let server = GitDaemon::start();
    app_repo(&server);
    let base = serve(vec![("/ctx.tar.gz", tarball_context())]);
    let root = TempRoot::new();
    let url = server.url("app.git");
    build_local(
        root.path(),
        &["-t", "p:git", &format!("{url}#v1:docker/app")],
    );
    let tarball = format!("{base}/ctx.tar.gz");
    build_local(
        root.path(),
        &["-t", "p:url", "-f", "build/Dockerfile", &tarball],
    );
    let cached = |kind: &str| -> usize {
        std::fs::read_dir(root.path().join("contexts").join(kind)).map_or(0, |rd| {
            rd.flatten()
                .map(|r| std::fs::read_dir(r.path()).unwrap().count())
                .sum()
        })
    };
    assert!(cached("git") >= 1 && cached("url") >= 1);

    // Without -a, recently used contexts stay.
    let (o, stdout, stderr) = output(kiln(root.path()).arg("prune"));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains(", 0 cached contexts"), "{stdout}");
    assert!(cached("git") >= 1);

    // -a removes them all and counts the space.
    let (o, stdout, stderr) = output(kiln(root.path()).args(["prune", "-a"]));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains(", 2 cached contexts"), "{stdout}");
    assert!(!stdout.contains("Total reclaimed space: 0 B"), "{stdout}");
    assert_eq!((cached("git"), cached("url")), (0, 0));
    // The images are untouched, and building again fetches again.
    assert_eq!(
        inspect(root.path(), "p:git")["Config"]["Labels"]["kind"],
        "git"
    );
    let (dir, stderr) = build_local(
        root.path(),
        &["-t", "p:git2", &format!("{url}#v1:docker/app")],
    );
    assert!(stderr.contains("git fetch"), "{stderr}");
    assert_eq!(read(dir.path(), "app/file.txt"), "v1\n");
    let (dir, _) = build_local(
        root.path(),
        &["-t", "p:url2", "-f", "build/Dockerfile", &tarball],
    );
    assert_eq!(read(dir.path(), "src/hello.txt"), "hello from a tarball\n");
}

/// `kiln build` of a local git URL through the whole pipeline: a RUN step
/// on a busybox base reads what came from the repository, then `kiln run`.
#[test]
fn build_and_run_from_a_git_url_needs_root() {
    crate::support::require_root();
    let f = crate::build::Fixture::new();
    let server = GitDaemon::start();
    server.repo("hello.git", |w| {
        write_files(
            w,
            &[
                (
                    "Dockerfile",
                    "FROM busybox\nCOPY greeting /greeting\nRUN wc -c < /greeting > /size\nCMD [\"cat\", \"/greeting\", \"/size\"]\n",
                ),
                ("greeting", "hello from git\n"),
            ],
        );
        git(w, &["add", "-A"]);
        git(w, &["commit", "-q", "-m", "hello"]);
    });
    let (o, _, stderr) = output(
        kiln(f.root.path())
            .args(["build", "--progress", "plain", "-t", "hello-git"])
            .arg(server.url("hello.git")),
    );
    assert!(o.status.success(), "{stderr}");
    let (o, stdout, stderr) = output(kiln(f.root.path()).args(["run", "--rm", "hello-git"]));
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["hello", "from", "git", "15"]
    );
}

/// Serves `body` at every path, slowly (64 KiB every 10 ms), so that a
/// progress bar has time to draw; until the test process ends.
fn serve_slowly(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            for chunk in body.chunks(64 << 10) {
                if stream.write_all(chunk).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    });
    format!("http://{addr}")
}

/// On a terminal (`script` gives kiln one) a download draws an indicatif
/// bar with bytes, total, rate and time left, then one closing line.
#[test]
fn a_download_draws_a_bar_on_a_terminal_needs_script() {
    // 4 MiB that gzip can't shrink (xorshift), so the download takes a while.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + u8::try_from(x % 90).unwrap())
        })
        .collect();
    let body = tar_gz(&[
        ("Dockerfile", "FROM scratch\nCOPY noise /noise\n"),
        ("noise", &noise),
    ]);
    let url = format!("{}/ctx.tar.gz", serve_slowly(body));
    let root = TempRoot::new();
    let typescript = root.path().join("typescript");
    let command = format!(
        "'{}' --root '{}' build -t tty:1 '{url}'",
        env!("CARGO_BIN_EXE_kiln"),
        root.path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &command])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("`script` (package bsdutils) is needed by this test");
    let screen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(out.status.success(), "{screen}");
    for want in [
        "downloading [",
        " MiB/",
        "iB/s",
        "eta ",
        &format!("#0 fetched {url}"),
    ] {
        assert!(
            screen.contains(want),
            "no `{want}` on the terminal:\n{screen}"
        );
    }
    assert_eq!(
        inspect(root.path(), "tty:1")["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `ADD GIT-URL DEST` like BuildKit: the tree at the ref (or its
/// sub-directory) copied into DEST, no `.dockerignore` of the repository
/// applied, `.git` only with `--keep-git-dir`; cached by commit, so a moved
/// branch re-runs exactly the ADD that reads it.
#[test]
fn add_of_a_git_url_copies_the_tree_and_is_cached_by_commit() {
    let server = GitDaemon::start();
    let work = app_repo(&server);
    let root = TempRoot::new();
    let url = server.url("app.git");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM scratch\n\
             ADD {url}#v1:docker/app /sub/\n\
             ADD --keep-git-dir {url} /full\n\
             ADD --chmod=700 {url}#main /mode/\n"
        ),
    )
    .unwrap();
    let ctx_arg = ctx.path().to_str().unwrap();
    let (dir, _) = build_local(root.path(), &[ctx_arg]);
    assert_eq!(read(dir.path(), "sub/file.txt"), "v1\n");
    // The repository's .dockerignore is not the build's.
    assert_eq!(read(dir.path(), "sub/debug.log"), "noise\n");
    assert!(!dir.path().join("sub/README").exists());
    assert!(!dir.path().join("sub/.git").exists());
    assert_eq!(read(dir.path(), "full/docker/app/file.txt"), "v2\n");
    assert!(dir.path().join("full/.git").is_dir(), "--keep-git-dir");
    assert!(!dir.path().join("mode/.git").exists());
    let mode = std::fs::metadata(dir.path().join("mode/README")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );

    // Nothing moved: every step is cached.
    let (_, stderr) = build_local(root.path(), &[ctx_arg]);
    assert!(stderr.contains("(0 steps run"), "{stderr}");

    // main moves: the two ADDs of main run again, the tag's stays cached.
    write_files(&work, &[("docker/app/file.txt", "v3\n")]);
    git(&work, &["commit", "-q", "-am", "three"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let (dir, stderr) = build_local(root.path(), &[ctx_arg]);
    // (The internal git sources count as steps run.)
    assert!(stderr.contains("(4 steps run, 1 cached)"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let add_v1 = lines.iter().position(|l| l.contains("[1/3] ADD")).unwrap();
    assert!(lines[add_v1 + 1].ends_with("CACHED"), "{stderr}");
    assert_eq!(read(dir.path(), "sub/file.txt"), "v1\n");
    assert_eq!(read(dir.path(), "full/docker/app/file.txt"), "v3\n");
    assert_eq!(read(dir.path(), "mode/docker/app/file.txt"), "v3\n");
    assert_no_leftovers(root.path());

    // --checksum of a git source is the commit the ref must be at.
    let v1 = git(&work, &["rev-parse", "v1^{commit}"]).trim().to_owned();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM scratch\nADD --checksum={} {url}#v1 /v1/\n", &v1[..12]),
    )
    .unwrap();
    let (dir, _) = build_local(root.path(), &[ctx_arg]);
    assert_eq!(read(dir.path(), "v1/docker/app/file.txt"), "v1\n");

    // COPY takes no git source; --keep-git-dir needs one; a missing ref, a
    // commit that is not the checksum are errors at their line.
    for (dockerfile, want) in [
        (
            format!("FROM scratch\nADD --checksum=0123456789abc {url}#v1 /x\n"),
            "checksum mismatch: expected commit 0123456789abc",
        ),
        (
            format!("FROM scratch\nADD --checksum=sha256:00 {url} /x\n"),
            "expected a commit id",
        ),
        (
            format!("FROM scratch\nCOPY {url} /x\n"),
            "source can't be a git ref for COPY",
        ),
        (
            "FROM scratch\nADD --keep-git-dir a /x\n".to_owned(),
            "applies to git sources only",
        ),
        (
            format!("FROM scratch\nADD {url}#no-such-ref /x\n"),
            "unknown ref `no-such-ref`",
        ),
    ] {
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let (o, _, stderr) = build(root.path(), &[ctx_arg]);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "want {want:?}:\n{stderr}");
        assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    }
}
