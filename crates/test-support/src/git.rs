//! Real git repositories for tests: [`GitDaemon`] serves bare repositories
//! with `git daemon` on 127.0.0.1 (one daemon per fixture, killed by PID
//! when it is dropped), and [`git`] runs the `git` program with a fixed
//! identity. Needs the `git` package (`scripts/install-test-deps.sh`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Run `git ARGS` in `dir` with a fixed author and no system config; its
/// trimmed stdout. Panics with git's message when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("the `git` program is needed by this test (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Write `files` (path, content) under `dir`, creating parents.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("a relative path")).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// `git daemon` serving the bare repositories under [`GitDaemon::base`] on
/// 127.0.0.1, as `git://127.0.0.1:PORT/NAME`.
pub struct GitDaemon {
    tmp: tempfile::TempDir,
    port: u16,
    daemon: Child,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl GitDaemon {
    /// Start a daemon on a free port and wait until it accepts connections.
    pub fn start() -> GitDaemon {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("srv");
        std::fs::create_dir(&base).unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // `git daemon` runs `git-daemon` as a child that would outlive a
        // kill of `git`: start the daemon itself, so that Drop ends it.
        let exec_path = git(&base, &["--exec-path"]);
        let daemon = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
            ])
            .arg(&base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`git daemon` is needed by this test (package git)");
        let server = GitDaemon { tmp, port, daemon };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The directory the bare repositories are in.
    pub fn base(&self) -> PathBuf {
        self.tmp.path().join("srv")
    }

    /// `git://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// Make `NAME` (a bare repository) from a work tree that `build` fills
    /// and commits in; returns the work tree (for more commits, pushed with
    /// `git push origin HEAD:BRANCH`).
    pub fn repo(&self, name: &str, build: impl FnOnce(&Path)) -> PathBuf {
        let work = self.tmp.path().join(format!("work-{name}"));
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        build(&work);
        git(
            &self.base(),
            &["clone", "-q", "--bare", work.to_str().unwrap(), name],
        );
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                self.base().join(name).to_str().unwrap(),
            ],
        );
        work
    }
}
