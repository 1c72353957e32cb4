//! A real distribution registry (Debian's `docker-registry`) on 127.0.0.1
//! for tests: its own config file, temp storage and a free port; stopped by
//! its PID when dropped.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry`.
pub struct TestRegistry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

/// How to start the registry.
#[derive(Debug, Default, Clone)]
pub struct RegistryConfig {
    /// `(user, password)` pairs for htpasswd Basic auth (bcrypt, made with
    /// `htpasswd -B` from apache2-utils); empty: no auth.
    pub users: Vec<(String, String)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl TestRegistry {
    /// Start a registry without auth.
    pub fn start() -> Self {
        Self::start_with(&RegistryConfig::default())
    }

    /// Start a registry; panics saying what to install when
    /// `docker-registry` (or `htpasswd`) is missing.
    pub fn start_with(cfg: &RegistryConfig) -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let mut auth = String::new();
        if !cfg.users.is_empty() {
            let htpasswd = dir.path().join("htpasswd");
            let mut lines = String::new();
            for (user, pass) in &cfg.users {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect(
                        "`htpasswd` is missing: run scripts/install-test-deps.sh (apache2-utils)",
                    );
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
                lines.push('\n');
            }
            std::fs::write(&htpasswd, lines).expect("write htpasswd");
            let _ = write!(
                auth,
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                    storage.display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("`docker-registry` is missing: run scripts/install-test-deps.sh (docker-registry)");
            let mut reg = Self {
                child: Some(child),
                dir,
                port,
            };
            if reg.wait_ready() {
                return reg;
            }
            // Lost the port to someone else (or failed): try another one.
            reg.stop();
            dir = std::mem::replace(&mut reg.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("docker-registry did not start; see its log above");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                eprintln!(
                    "docker-registry exited with {status}:\n{}",
                    std::fs::read_to_string(self.dir.path().join("registry.log"))
                        .unwrap_or_default()
                );
                self.child = None;
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's storage root (`docker/registry/v2/…` inside).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where a blob's bytes are kept in the storage.
    pub fn blob_data_path(&self, hex: &str) -> PathBuf {
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's PID (to kill it mid-transfer).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the registry (by PID) and reap it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The temp directory of this registry.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
