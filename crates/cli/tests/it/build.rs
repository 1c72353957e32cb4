//! `kiln build` end to end, against a busybox base image made with
//! `kiln import`. Tests that run RUN steps need root (`*_needs_root`; they
//! fail without it).

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_test_support::{TempRoot, busybox_rootfs_tar};

use crate::support::{kiln, output, output_with_stdin, require_root};

/// A store with a `busybox` base image, and a context directory.
pub struct Fixture {
    pub root: TempRoot,
    pub ctx: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let root = TempRoot::new();
        let tar = root.path().join("busybox.tar");
        std::fs::write(&tar, busybox_rootfs_tar()).unwrap();
        let (out, _, stderr) = output(
            kiln(root.path())
                .args(["import", "-c", r#"CMD ["sh"]"#])
                .arg(&tar)
                .arg("busybox"),
        );
        assert!(out.status.success(), "{stderr}");
        std::fs::remove_file(&tar).unwrap();
        Fixture {
            root,
            ctx: tempfile::tempdir().unwrap(),
        }
    }

    pub fn file(&self, rel: &str, content: &str) -> &Fixture {
        let p = self.ctx.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn dockerfile(&self, text: &str) -> &Fixture {
        self.file("Dockerfile", text)
    }

    pub fn build(&self, extra: &[&str]) -> Command {
        let mut cmd = kiln(self.root.path());
        cmd.arg("build").arg("--progress").arg("plain");
        cmd.args(extra);
        cmd.arg(self.ctx.path());
        cmd
    }

    /// Build, expecting success; returns stderr (the progress).
    pub fn build_ok(&self, extra: &[&str]) -> String {
        let (out, stdout, stderr) = output(&mut self.build(extra));
        assert!(out.status.success(), "build failed:\n{stdout}\n{stderr}");
        stderr
    }

    /// Build with JSON progress: the names of the steps that ran and of
    /// those found in the cache.
    pub fn build_json(&self, extra: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut cmd = kiln(self.root.path());
        cmd.args(["build", "--progress", "json"])
            .args(extra)
            .arg(self.ctx.path());
        let (out, stdout, stderr) = output(&mut cmd);
        assert!(out.status.success(), "build failed:\n{stdout}\n{stderr}");
        let (mut ran, mut cached) = (Vec::new(), Vec::new());
        for line in stderr.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let name = v["name"].as_str().unwrap_or("").to_owned();
            match v["type"].as_str() {
                Some("started") => ran.push(name),
                Some("cached") => cached.push(name),
                _ => {}
            }
        }
        (ran, cached)
    }

    /// `kiln inspect NAME` as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let (out, stdout, stderr) = output(kiln(self.root.path()).args(["inspect", name]));
        assert!(out.status.success(), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v[0].clone()
    }

    /// The image's filesystem, exported with `--output type=local`.
    pub fn export(&self, extra: &[&str]) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let mut args = extra.to_vec();
        args.extend(["--output", &dest]);
        self.build_ok(&args);
        out
    }
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()))
}

fn history(image: &serde_json::Value, root: &Path, name: &str) -> Vec<String> {
    let _ = image;
    let (out, stdout, _) = output(kiln(root).args(["history", "--no-trunc", name]));
    assert!(out.status.success());
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn build_sets_config_and_files_like_docker_needs_root() {
    require_root();
    let f = Fixture::new();
    f.file("hello.txt", "hello\n").dockerfile(
        r#"# syntax=docker/dockerfile:1.7
FROM busybox AS base
ARG GREETING=hi
ENV APP_HOME=/app PATH=/app/bin:$PATH
WORKDIR $APP_HOME
COPY --chmod=0640 hello.txt ./
RUN echo "$GREETING from $APP_HOME" > greeting && mkdir bin
LABEL org.example.title="demo app" version=1
EXPOSE 8080 53/udp
VOLUME /data
USER nobody
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD ["true"]
ENTRYPOINT ["cat"]
CMD ["greeting"]
"#,
    );
    let dir = f.export(&["-t", "demo:1"]);
    assert_eq!(read(dir.path(), "app/hello.txt"), "hello\n");
    assert_eq!(read(dir.path(), "app/greeting"), "hi from /app\n");
    let meta = std::fs::metadata(dir.path().join("app/hello.txt")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o640
    );

    let img = f.inspect("demo:1");
    let c = &img["Config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(c["Cmd"], serde_json::json!(["greeting"]));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Labels"]["org.example.title"], "demo app");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object());
    assert!(c["ExposedPorts"]["53/udp"].is_object());
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000_u64);
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"APP_HOME=/app"), "{env:?}");
    assert!(
        env.iter()
            .any(|e| e.starts_with("PATH=/app/bin:/usr/local/sbin")),
        "{env:?}"
    );
    let h = history(&img, f.root.path(), "demo:1").join("\n");
    for want in [
        "RUN |1 GREETING=hi /bin/sh -c echo \"$GREETING from $APP_HOME\" > greeting && mkdir bin # buildkit",
        "COPY --chmod=0640 hello.txt ./ # buildkit",
        "WORKDIR /app",
        "ENTRYPOINT [\"cat\"]",
        "CMD [\"greeting\"]",
        "EXPOSE [8080/tcp 53/udp]",
        "ARG GREETING=hi",
    ] {
        assert!(h.contains(want), "history lacks `{want}`:\n{h}");
    }
}

#[test]
fn rebuild_hits_the_cache_and_a_changed_file_reruns_only_its_readers_needs_root() {
    require_root();
    let f = Fixture::new();
    f.file("a.txt", "a1").file("b.txt", "b1").dockerfile(
        "FROM busybox\nCOPY a.txt /a\nRUN cat /a > /a.copy\nCOPY b.txt /b\nRUN cat /b > /b.copy\n",
    );
    let (ran, _) = f.build_json(&["-t", "c"]);
    assert_eq!(
        ran.iter().filter(|n| n.contains("RUN")).count(),
        2,
        "{ran:?}"
    );

    // Nothing changed: the last step is a hit and nothing runs, and the
    // image is the very same one (times come from the cached content).
    let id = f.inspect("c")["Id"].clone();
    let (ran, cached) = f.build_json(&["-t", "c"]);
    assert!(ran.is_empty(), "a no-op rebuild ran {ran:?}");
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(
        f.inspect("c")["Id"],
        id,
        "a no-op rebuild made another image"
    );

    // A file read only by the second COPY: the first half stays cached.
    f.file("b.txt", "b2");
    let (ran, cached) = f.build_json(&["-t", "c"]);
    let steps: Vec<&String> = ran
        .iter()
        .filter(|n| !n.starts_with("[internal]"))
        .collect();
    assert_eq!(steps.len(), 2, "{ran:?}");
    assert!(
        steps[0].contains("COPY b.txt /b") && steps[1].contains("RUN cat /b"),
        "{ran:?}"
    );
    assert!(
        cached.iter().any(|n| n.contains("RUN cat /a")),
        "{cached:?}"
    );
    let dir = f.export(&[]);
    assert_eq!(read(dir.path(), "b.copy"), "b2");
    assert_eq!(read(dir.path(), "a.copy"), "a1");

    // --no-cache runs everything again.
    let (ran, cached) = f.build_json(&["--no-cache"]);
    assert!(cached.is_empty(), "{cached:?}");
    assert_eq!(
        ran.iter().filter(|n| n.contains("RUN")).count(),
        2,
        "{ran:?}"
    );
}

/// Every file under `dir` with its inode, size and modification time, but
/// the database (redb marks itself open on disk whenever it is opened) and
/// the context stat cache (saved once the context's files are older than
/// its racy window, 2 s, whenever that falls; its no-op behaviour is
/// pinned in kiln-context's tests).
fn files_with_stamps(dir: &Path) -> std::collections::BTreeMap<String, (u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else if e.file_name() != "kiln.redb" {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                if rel.starts_with("cache/stat/") {
                    continue;
                }
                out.insert(rel, (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

#[test]
fn a_no_op_rebuild_writes_nothing_to_the_store_needs_root() {
    require_root();
    let f = Fixture::new();
    f.file("a.txt", "a1")
        .dockerfile("FROM busybox\nCOPY a.txt /a\nRUN cat /a > /a.copy\n");
    f.build_ok(&["-t", "c"]);
    let before = files_with_stamps(f.root.path());
    let (ran, cached) = f.build_json(&["-t", "c"]);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(cached.len(), 1, "{cached:?}");
    // No image, index, log, blob, listing or stat cache written again.
    assert_eq!(files_with_stamps(f.root.path()), before);
    // And the context is still read: a change reruns the steps.
    f.file("a.txt", "a2");
    let (ran, _) = f.build_json(&["-t", "c"]);
    assert!(ran.iter().any(|n| n.contains("RUN cat /a")), "{ran:?}");
}

#[test]
fn explain_names_the_changed_file_needs_root() {
    require_root();
    let f = Fixture::new();
    f.file("src/main.c", "int main;")
        .file("other", "x")
        .dockerfile("FROM busybox\nCOPY src /src\nRUN ls /src > /list\n");
    f.build_ok(&[]);
    f.file("src/main.c", "int main(void);");
    let stderr = f.build_ok(&["--explain"]);
    assert!(
        stderr.contains("context file src/main.c changed"),
        "{stderr}"
    );
}

#[test]
fn target_builds_only_the_stages_it_needs_needs_root() {
    require_root();
    let f = Fixture::new();
    f.dockerfile(
        "FROM busybox AS unused\nRUN exit 7\n\
         FROM busybox AS dep\nRUN echo dep > /dep\n\
         FROM busybox AS app\nCOPY --from=dep /dep /dep\nRUN cat /dep\n\
         FROM app AS last\nRUN exit 9\n",
    );
    let dir = f.export(&["--target", "app"]);
    assert_eq!(read(dir.path(), "dep"), "dep\n");
    let (out, _, stderr) = output(&mut f.build(&["--target", "nope"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("target stage \"nope\" could not be found"),
        "{stderr}"
    );
}

#[test]
fn independent_stages_run_at_the_same_time_needs_root() {
    require_root();
    let f = Fixture::new();
    // Each stage waits (up to 20 s) for the other to have started: this
    // only finishes when both run at once. The shared cache mount is how
    // they see each other.
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=sync,target=/sync touch /sync/{me} && \
             i=0; while [ ! -e /sync/{other} ]; do i=$((i+1)); [ $i -lt 400 ] || exit 1; sleep 0.05; done; \
             echo {me} > /{me}\n"
        )
    };
    f.dockerfile(&format!(
        "FROM busybox AS a\n{}FROM busybox AS b\n{}FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        wait("a", "b"),
        wait("b", "a")
    ));
    let dir = f.export(&["--jobs", "2"]);
    assert_eq!(read(dir.path(), "a"), "a\n");
    assert_eq!(read(dir.path(), "b"), "b\n");
}

#[test]
fn a_failing_step_cancels_its_siblings_and_shows_where_needs_root() {
    require_root();
    let f = Fixture::new();
    // A sleep length unique to this test process, so that the leftover check
    // below cannot see the sleeps of other builds running on the machine.
    let secs = 60_000 + std::process::id() % 10_000;
    f.dockerfile(&format!(
        "FROM busybox AS slow\nRUN sleep {secs}\n\
         FROM busybox AS bad\nRUN echo about to fail && \\\n    echo to stderr >&2 && exit 3\n\
         FROM busybox\nCOPY --from=slow / /slow\nCOPY --from=bad / /bad\n",
    ));
    let start = Instant::now();
    let (out, _, stderr) = output(&mut f.build(&[]));
    // A hang check, not a timing target: the sleeping sibling is killed.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the slow step was not cancelled"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CANCELED"), "{stderr}");
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(stderr.contains("RUN echo about to fail"), "{stderr}");
    assert!(stderr.contains("to stderr"), "{stderr}");
    // The Dockerfile line with a caret under it.
    assert!(stderr.contains("--> "), "{stderr}");
    assert!(stderr.contains("^^^"), "{stderr}");
    let log = stderr
        .lines()
        .find_map(|l| l.strip_prefix("full log: "))
        .unwrap_or_else(|| panic!("no log path in:\n{stderr}"));
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("to stderr"));
    // No process is left behind.
    let ps = Command::new("sh")
        .arg("-c")
        .arg(format!("ps -eo args | grep -c '[s]leep {secs}' || true"))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "0");
}

#[test]
fn secrets_never_reach_a_layer_or_the_history_needs_root() {
    require_root();
    let f = Fixture::new();
    let secret_file = f.ctx.path().join("../kiln-secret-value");
    std::fs::write(&secret_file, "s3cr3t-v4lue").unwrap();
    // The Dockerfile holds the value reversed: it must not appear itself.
    f.dockerfile(
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok test \"$(rev /run/secrets/tok)\" = eul4v-t3rc3s && echo ok > /ok\n\
         RUN --mount=type=secret,id=tok,env=TOKEN test \"$(echo -n $TOKEN | rev)\" = eul4v-t3rc3s\n",
    );
    let spec = format!("id=tok,src={}", secret_file.display());
    let dir = f.export(&["--secret", &spec, "-t", "sec"]);
    std::fs::remove_file(&secret_file).unwrap();
    assert_eq!(read(dir.path(), "ok"), "ok\n");
    assert!(!dir.path().join("run/secrets/tok").exists());
    let h = history(&serde_json::Value::Null, f.root.path(), "sec").join("\n");
    assert!(!h.contains("s3cr3t"), "{h}");
    // No blob in the store holds the value.
    let blobs = f.root.path().join("oci/blobs/sha256");
    for e in std::fs::read_dir(blobs).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        assert!(
            !data.windows(12).any(|w| w == b"s3cr3t-v4lue"),
            "a blob holds the secret"
        );
    }
    // A missing required secret is an error.
    f.dockerfile("FROM busybox\nRUN --mount=type=secret,id=tok,required=true true\n");
    let (out, _, stderr) = output(&mut f.build(&[]));
    assert!(!out.status.success());
    assert!(stderr.contains("secret tok not found"), "{stderr}");
}

#[test]
fn a_missing_base_image_is_an_error_at_its_line() {
    let root = TempRoot::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        // Not in the store, and its (loopback) registry is not there: the
        // pull fails, said at the FROM line. Tests never reach Docker Hub.
        "FROM scratch AS a\nFROM 127.0.0.1:9/nosuchimage:1.0\n",
    )
    .unwrap();
    let (out, _, stderr) = output(kiln(root.path()).arg("build").arg(ctx.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("base image `127.0.0.1:9/nosuchimage:1.0`")
            && stderr.contains("pulling it failed")
            && stderr.contains("cannot reach registry 127.0.0.1:9"),
        "{stderr}"
    );
    assert!(stderr.contains("Dockerfile:2:1"), "{stderr}");
    assert!(stderr.contains("^^^"), "{stderr}");
}

#[test]
fn another_frontend_and_unsupported_flags_are_errors() {
    let root = TempRoot::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "# syntax=example.com/frontend:2\nFROM scratch\n",
    )
    .unwrap();
    let (out, _, stderr) = output(kiln(root.path()).arg("build").arg(ctx.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unsupported frontend"), "{stderr}");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nRUN --mount=type=ssh true\n",
    )
    .unwrap();
    let (out, _, stderr) = output(kiln(root.path()).arg("build").arg(ctx.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("type=ssh is not supported"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2:1"), "{stderr}");
    let (out, _, stderr) = output(kiln(root.path()).args(["build", "--push"]).arg(ctx.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--push"), "{stderr}");
}

#[test]
fn a_scratch_image_from_stdin_with_iidfile() {
    let root = TempRoot::new();
    let iid = root.path().join("iid");
    let out = output_with_stdin(
        kiln(root.path())
            .args(["build", "--progress", "plain", "--iidfile"])
            .arg(&iid)
            .args(["-t", "scratchy", "-"]),
        b"FROM scratch\nCOPY <<EOF /hello\nhi\nEOF\nENV A=1\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = std::fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    let (o, stdout, _) = output(kiln(root.path()).args(["inspect", "scratchy"]));
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v[0]["Id"].as_str().unwrap(), id.trim());
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
}

/// A one-file HTTP server on 127.0.0.1 (404 for other paths); serves until
/// the test process ends.
fn serve(body: &'static [u8]) -> String {
    use std::io::{BufRead as _, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
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
            let ok = first.contains("/files/hello.txt ");
            let (status, data): (&str, &[u8]) = if ok {
                ("200 OK", body)
            } else {
                ("404 Not Found", b"")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n",
                data.len()
            );
            let _ = stream.write_all(data);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_downloads_urls_and_checks_their_checksum() {
    let base = serve(b"downloaded\n");
    let root = TempRoot::new();
    let ctx = tempfile::tempdir().unwrap();
    let sum = "sha256:c4a2d9e0a0e67f5b1d3dc7bb2b8e6d3ea0b4e0e5c8e6a2c4a42b2c4f1b8e0a11";
    let good = kiln_test_support::snapshot::sha256_hex(b"downloaded\n");
    let build = |dockerfile: String| {
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let r = output(
            kiln(root.path())
                .args(["build", "--progress", "plain", "-o", &dest])
                .arg(ctx.path()),
        );
        (r, out)
    };
    let ((o, _, stderr), out) = build(format!(
        "FROM scratch\nADD --checksum=sha256:{good} {base}/files/hello.txt /dl/\nADD {base}/files/hello.txt /plain\n"
    ));
    assert!(o.status.success(), "{stderr}");
    assert_eq!(read(out.path(), "dl/hello.txt"), "downloaded\n");
    assert_eq!(read(out.path(), "plain"), "downloaded\n");
    let meta = std::fs::metadata(out.path().join("dl/hello.txt")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let ((o, _, stderr), _) = build(format!(
        "FROM scratch\nADD --checksum={sum} {base}/files/hello.txt /dl/\n"
    ));
    assert!(!o.status.success());
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    let ((o, _, stderr), _) = build(format!("FROM scratch\nADD {base}/missing /x\n"));
    assert!(!o.status.success());
    assert!(stderr.contains("404"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2:1"), "{stderr}");
}

#[test]
fn run_heredoc_scripts_and_mounts_needs_root() {
    require_root();
    let f = Fixture::new();
    f.file("f.txt", "data\n").dockerfile(
        "FROM busybox\n\
         RUN <<EOF\n#!/bin/sh\necho \"script $0\" > /script-out\nEOF\n\
         RUN cat <<EOT > /cat-out\nline1\nEOT\n\
         RUN --mount=type=cache,target=/cache,sharing=locked echo x >> /cache/n && wc -l < /cache/n > /count\n\
         RUN --mount=type=bind,target=/ctx cat /ctx/f.txt > /from-ctx && ! touch /ctx/new 2>/dev/null\n\
         RUN --mount=type=tmpfs,target=/t touch /t/x && ls /t > /tmp-list\n",
    );
    let dir = f.export(&[]);
    assert_eq!(read(dir.path(), "script-out"), "script /dev/pipes/EOF\n");
    assert_eq!(read(dir.path(), "cat-out"), "line1\n");
    assert_eq!(read(dir.path(), "count").trim(), "1");
    assert_eq!(read(dir.path(), "from-ctx"), "data\n");
    assert_eq!(read(dir.path(), "tmp-list"), "x\n");
    // Mount points and the mounts' contents are not part of the image.
    for gone in ["t", "ctx", "cache", "dev/pipes"] {
        assert!(!dir.path().join(gone).exists(), "/{gone} is in the image");
    }
    // The cache mount persists between builds.
    let dir = f.export(&["--no-cache"]);
    assert_eq!(read(dir.path(), "count").trim(), "2");
}

#[test]
fn a_damaged_stat_cache_is_dropped_with_a_warning_not_fatal() {
    let root = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("a.txt"), "one\n").unwrap();
    let build = |tag: &str| {
        output(
            kiln(root.path())
                .args(["build", "--progress", "plain", "-t", tag])
                .arg(ctx.path()),
        )
    };
    let (out, _, stderr) = build("s:1");
    assert!(out.status.success(), "{stderr}");
    std::fs::write(ctx.path().join("a.txt"), "two\n").unwrap();
    // Wait out the cache's racy window, so the next build saves a.txt's stamp.
    std::thread::sleep(Duration::from_millis(2100));
    let (out, _, stderr) = build("s:2");
    assert!(out.status.success(), "{stderr}");
    let dir = root.path().join("cache").join("stat");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "no stat cache was written in {dir:?}");
    for f in &files {
        std::fs::write(f, b"\x00garbage, not a stat cache").unwrap();
    }
    std::fs::write(ctx.path().join("a.txt"), "three\n").unwrap();
    let (out, _, stderr) = build("s:3");
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARNING") && stderr.contains("hashing the context afresh"),
        "{stderr}"
    );
    // The new content was read, not a stale digest.
    let (_, stdout, _) = output(kiln(root.path()).args(["inspect", "s:3", "s:2"]));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_ne!(v[0]["Id"], v[1]["Id"]);
    // The damaged file was replaced: the next build does not warn.
    let (out, _, stderr) = build("s:4");
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
}

#[test]
fn ignored_directories_are_skipped_unless_a_reinclude_reaches_inside() {
    let f = Fixture::new();
    f.file(".dockerignore", "build\n!build/keep.txt\nnode_modules\n")
        .file("src/a.c", "int a;")
        .file("build/keep.txt", "keep 1")
        .file("build/obj.o", "obj 1")
        .file("node_modules/m/index.js", "m 1")
        .dockerfile("FROM scratch\nCOPY . /app/\n");
    let copies = |ran: &[String]| ran.iter().filter(|n| n.contains("COPY")).count();
    let (ran, _) = f.build_json(&["-t", "ign"]);
    assert_eq!(copies(&ran), 1, "{ran:?}");
    let (ran, cached) = f.build_json(&["-t", "ign"]);
    assert!(ran.is_empty(), "a no-op rebuild ran {ran:?}");
    assert_eq!(cached.len(), 1, "{cached:?}");
    // Inside a directory no rule re-includes from (the walk does not enter
    // it): nothing the build reads.
    f.file("node_modules/m/index.js", "m 2")
        .file("node_modules/new/x.js", "new");
    let (ran, _) = f.build_json(&["-t", "ign"]);
    assert!(ran.is_empty(), "an ignored directory's change ran {ran:?}");
    // An ignored file in a directory the walk enters for a re-include.
    f.file("build/obj.o", "obj 2");
    let (ran, _) = f.build_json(&["-t", "ign"]);
    assert!(ran.is_empty(), "an ignored file's change ran {ran:?}");
    // The re-included file is read: its change reruns the COPY.
    f.file("build/keep.txt", "keep 2");
    let (ran, _) = f.build_json(&["-t", "ign"]);
    assert_eq!(copies(&ran), 1, "{ran:?}");
    let dir = f.export(&[]);
    assert_eq!(read(dir.path(), "app/build/keep.txt"), "keep 2");
    assert_eq!(read(dir.path(), "app/src/a.c"), "int a;");
    assert!(!dir.path().join("app/build/obj.o").exists());
    assert!(!dir.path().join("app/node_modules").exists());
}
