//! Where a context comes from, as `docker build` reads its argument, and
//! fetching remote ones: git repositories (with the `git` program) and
//! tarball URLs (reqwest), cached per URL and commit/content.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::archive;
use crate::error::{ContextError, Result};

/// A build context argument, classified like docker does: `-` is stdin,
/// an existing directory is local, then git URLs, then `http(s)://` URLs;
/// anything else is a (missing) local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local directory.
    Dir(PathBuf),
    /// `-`: a tar archive (plain or compressed) or a Dockerfile on stdin.
    Stdin,
    /// A git repository.
    Git(GitSource),
    /// An `http(s)://` URL of a tar archive (or of a Dockerfile).
    Url(String),
}

/// A git context: `URL[#REF][:SUBDIR]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// What git clones (`github.com/o/r` becomes `https://github.com/o/r`).
    pub url: String,
    /// Branch, tag, commit (full or short) or any ref (`refs/pull/1/head`);
    /// `None` for the remote's HEAD.
    pub reference: Option<String>,
    /// The directory inside the repository that is the context root.
    pub subdir: Option<String>,
}

impl std::fmt::Display for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)?;
        if self.reference.is_some() || self.subdir.is_some() {
            write!(f, "#{}", self.reference.as_deref().unwrap_or(""))?;
            if let Some(s) = &self.subdir {
                write!(f, ":{s}")?;
            }
        }
        Ok(())
    }
}

impl Source {
    /// Classify a context argument.
    pub fn parse(arg: &str) -> Source {
        if arg == "-" {
            return Source::Stdin;
        }
        if Path::new(arg).is_dir() {
            return Source::Dir(PathBuf::from(arg));
        }
        if is_git_url(arg) {
            return Source::Git(GitSource::parse(arg));
        }
        if arg.starts_with("http://") || arg.starts_with("https://") {
            return Source::Url(arg.to_owned());
        }
        Source::Dir(PathBuf::from(arg))
    }
}

/// docker's `IsGitURL`, plus `ssh://` (which BuildKit accepts) and
/// `file://` (a repository on this machine; kiln's addition): an http(s)
/// URL whose path ends in `.git` (before a fragment), or a `git://`,
/// `git@`, `ssh://`, `file://` or `github.com/` prefix.
fn is_git_url(s: &str) -> bool {
    if s.starts_with("http://") || s.starts_with("https://") {
        let before = s.split('#').next().unwrap_or(s);
        return Path::new(before)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("git"));
    }
    ["git://", "git@", "ssh://", "file://", "github.com/"]
        .iter()
        .any(|p| s.starts_with(p))
}

impl GitSource {
    /// Split `URL#REF:SUBDIR` (docker's fragment syntax).
    pub fn parse(arg: &str) -> GitSource {
        let (url, fragment) = match arg.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (arg, None),
        };
        let url = if url.starts_with("github.com/") {
            format!("https://{url}")
        } else {
            url.to_owned()
        };
        let (reference, subdir) = match fragment {
            Some(f) => {
                let (r, d) = match f.split_once(':') {
                    Some((r, d)) => (r, Some(d)),
                    None => (f, None),
                };
                (
                    Some(r.to_owned()).filter(|r| !r.is_empty()),
                    d.map(str::to_owned).filter(|d| !d.is_empty()),
                )
            }
            None => (None, None),
        };
        GitSource {
            url,
            reference,
            subdir,
        }
    }
}

/// Something that happened while fetching a remote context, for the CLI to
/// render (libraries never print).
#[derive(Debug, Clone)]
pub enum Progress {
    /// Bytes of a download so far.
    Download {
        /// The URL.
        url: String,
        /// Bytes received.
        done: u64,
        /// Content length, when the server said.
        total: Option<u64>,
    },
    /// A git step started (`ls-remote`, `fetch`, `checkout`, `submodules`).
    Git {
        /// The repository.
        url: String,
        /// The step.
        step: &'static str,
    },
    /// A line of git's own progress during a step (`Receiving objects:
    /// 45% (9/20)`, `Resolving deltas: 100% (3/3), done.`).
    GitStatus {
        /// The repository.
        url: String,
        /// The step (`fetch`, `submodules`).
        step: &'static str,
        /// git's text, one line without its line ending.
        text: String,
    },
    /// A remote source was found in the cache; nothing was fetched.
    Cached {
        /// The source.
        source: String,
    },
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Limits and hooks for fetching remote contexts.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub cache_dir: PathBuf,
    pub max_download: u64,
    pub timeout: Duration,
    /// The longest wait for the response's headers and for each read of
    /// its body (a stalled server), not a limit on the whole download.
    pub read_timeout: Duration,
    pub max_redirects: usize,
    pub progress: Option<ProgressFn>,
    /// Keep `.git` in git checkouts (BuildKit's
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`); cached apart from those without.
    pub keep_git_dir: bool,
}

impl Fetcher {
    fn report(&self, p: &Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }

    /// Fetch a git source into the cache; returns the checkout's root
    /// (the repository root, before `subdir`).
    pub(crate) fn git(&self, src: &GitSource) -> Result<PathBuf> {
        let err = |reason: String| ContextError::Git {
            url: src.url.clone(),
            reason,
        };
        let reference = src.reference.as_deref().unwrap_or("HEAD");
        if reference.starts_with('-') {
            return Err(err(format!("invalid ref `{reference}`")));
        }
        let dir = self.cache_dir.join("git").join(short_hash(&src.url));
        fs_err::create_dir_all(&dir)?;
        // Resolve the ref to a commit first: a cached checkout of that
        // commit is reused without fetching.
        let commit = if is_hex(reference, 40) {
            Some(reference.to_owned())
        } else {
            self.report(&Progress::Git {
                url: src.url.clone(),
                step: "ls-remote",
            });
            // `REF^{}` too: a pattern matches an annotated tag's own line
            // only, and the cache is keyed by the commit it points to.
            let peeled = format!("{reference}^{{}}");
            let out = git(None, &["ls-remote", "--", &src.url, reference, &peeled])
                .map_err(|e| err(format!("cannot list its refs: {e}")))?;
            pick_ref(&out, reference)
        };
        let key = match &commit {
            Some(c) => c.clone(),
            None if is_hex(reference, 0) && reference.len() >= 4 => {
                format!("short-{reference}")
            }
            None => return Err(err(format!("unknown ref `{reference}`"))),
        };
        // A checkout that keeps .git is another cache entry.
        let suffix = if self.keep_git_dir { ".keep-git" } else { "" };
        let done = dir.join(format!("{key}{suffix}"));
        if done.is_dir() {
            crate::cache::touch(&done);
            self.report(&Progress::Cached {
                source: src.to_string(),
            });
            return Ok(done);
        }
        let tmp = tempfile::Builder::new().prefix("tmp-").tempdir_in(&dir)?;
        let work = tmp.path();
        git(Some(work), &["init", "-q"]).map_err(err)?;
        git(Some(work), &["remote", "add", "origin", &src.url]).map_err(err)?;
        self.report(&Progress::Git {
            url: src.url.clone(),
            step: "fetch",
        });
        // By commit when known (protocol v2 serves any reachable object),
        // else by name; both shallow. A short commit needs the full history.
        let mut wants: Vec<&str> = commit.iter().map(String::as_str).collect();
        if commit.as_deref() != Some(reference) {
            wants.push(reference);
        }
        let mut failures = Vec::new();
        let mut target = "FETCH_HEAD".to_owned();
        let fetch_status = |text: &str| {
            self.report(&Progress::GitStatus {
                url: src.url.clone(),
                step: "fetch",
                text: text.to_owned(),
            });
        };
        let fetched = wants.iter().any(|want| {
            let r = git_with_progress(
                work,
                &[
                    "fetch",
                    "--progress",
                    "--depth",
                    "1",
                    "--no-tags",
                    "origin",
                    "--",
                    want,
                ],
                &fetch_status,
            );
            r.map_err(|e| failures.push(e)).is_ok()
        });
        if !fetched {
            let full = git_with_progress(
                work,
                &[
                    "fetch",
                    "--progress",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                &fetch_status,
            );
            if let Err(e) = full {
                failures.push(e);
                return Err(err(format!(
                    "fetching `{reference}` failed: {}",
                    failures.join("; ")
                )));
            }
            let found = [reference.to_owned(), format!("origin/{reference}")]
                .iter()
                .find_map(|name| {
                    git(
                        Some(work),
                        &["rev-parse", "--verify", "-q", &format!("{name}^{{commit}}")],
                    )
                    .ok()
                })
                .ok_or_else(|| err(format!("unknown ref `{reference}`")))?;
            found.trim().clone_into(&mut target);
        }
        self.report(&Progress::Git {
            url: src.url.clone(),
            step: "checkout",
        });
        git(Some(work), &["checkout", "-q", "--detach", &target]).map_err(err)?;
        // The commit checked out names the cache entry (the ref may have
        // moved between ls-remote and fetch).
        let head = git(Some(work), &["rev-parse", "HEAD"]).map_err(err)?;
        let done = if commit.is_some() {
            dir.join(format!("{}{suffix}", head.trim()))
        } else {
            done
        };
        if work.join(".gitmodules").exists() {
            self.report(&Progress::Git {
                url: src.url.clone(),
                step: "submodules",
            });
            git_with_progress(
                work,
                &[
                    "submodule",
                    "update",
                    "--progress",
                    "--init",
                    "--recursive",
                    "--depth=1",
                ],
                &|text: &str| {
                    self.report(&Progress::GitStatus {
                        url: src.url.clone(),
                        step: "submodules",
                        text: text.to_owned(),
                    });
                },
            )
            .map_err(|e| err(format!("submodules: {e}")))?;
        }
        if !self.keep_git_dir {
            remove_git_dirs(work)?;
        }
        let kept = tmp.keep();
        crate::cache::touch(&kept);
        match std::fs::rename(&kept, &done) {
            Ok(()) => Ok(done),
            // Another process finished the same checkout first.
            Err(_) if done.is_dir() => {
                let _ = std::fs::remove_dir_all(&kept);
                Ok(done)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&kept);
                Err(e.into())
            }
        }
    }

    /// Download `url` into the cache. Returns the extracted context
    /// directory, or the text when the URL holds a plain file (a
    /// Dockerfile, like docker accepts).
    pub(crate) fn url(&self, url: &str) -> Result<Fetched> {
        let err = |reason: String| ContextError::Download {
            url: url.to_owned(),
            reason,
        };
        let dir = self.cache_dir.join("url").join(short_hash(url));
        fs_err::create_dir_all(&dir)?;
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(self.max_redirects))
            .connect_timeout(self.timeout)
            // reqwest's blocking timeout bounds the wait for the headers
            // and each read of the body, not the whole download.
            .timeout(self.read_timeout)
            .build()
            .map_err(|e| err(describe(&e)))?;
        let meta_path = dir.join("validators");
        let validators = std::fs::read_to_string(&meta_path).unwrap_or_default();
        let mut req = client.get(url);
        // Ask conditionally only while the content the validators describe
        // is still cached (`kiln prune` may have removed it).
        let cached_digest = validators
            .lines()
            .find_map(|l| l.strip_prefix("digest "))
            .filter(|d| Fetched::exists(&dir, d))
            .map(str::to_owned);
        if cached_digest.is_some() {
            for line in validators.lines() {
                if let Some(v) = line.strip_prefix("etag ") {
                    req = req.header(reqwest::header::IF_NONE_MATCH, v);
                } else if let Some(v) = line.strip_prefix("last-modified ") {
                    req = req.header(reqwest::header::IF_MODIFIED_SINCE, v);
                }
            }
        }
        let mut resp = req.send().map_err(|e| err(describe(&e)))?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(d) = &cached_digest
                && let Some(f) = Fetched::load(&dir, d)
            {
                self.report(&Progress::Cached {
                    source: url.to_owned(),
                });
                return Ok(f);
            }
            return Err(err(
                "the server answered 304 Not Modified to a request kiln did not make conditional"
                    .to_owned(),
            ));
        }
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let total = resp.content_length();
        if let Some(t) = total
            && t > self.max_download
        {
            return Err(err(format!(
                "it is {t} bytes, more than the limit of {} bytes",
                self.max_download
            )));
        }
        let mut file = tempfile::NamedTempFile::new_in(&dir)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = 0u64;
        let mut last_report = 0u64;
        loop {
            let n = resp
                .read(&mut buf)
                .map_err(|e| err(format!("reading the response: {}", chain(&e))))?;
            if n == 0 {
                break;
            }
            done += n as u64;
            if done > self.max_download {
                return Err(err(format!(
                    "more than the limit of {} bytes",
                    self.max_download
                )));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            if done - last_report >= 1 << 20 {
                last_report = done;
                self.report(&Progress::Download {
                    url: url.to_owned(),
                    done,
                    total,
                });
            }
        }
        if let Some(t) = total
            && done < t
        {
            return Err(err(format!(
                "the connection closed after {done} of {t} bytes"
            )));
        }
        self.report(&Progress::Download {
            url: url.to_owned(),
            done,
            total,
        });
        file.as_file().sync_all()?;
        let digest = hex::encode(hasher.finalize());
        let mut validators = format!("digest {digest}\n");
        for (name, key) in [
            (reqwest::header::ETAG, "etag"),
            (reqwest::header::LAST_MODIFIED, "last-modified"),
        ] {
            if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
                let _ = writeln!(validators, "{key} {v}");
            }
        }
        let fetched = if let Some(f) = Fetched::load(&dir, &digest) {
            f
        } else {
            let mut reader = BufReader::new(fs_err::File::open(file.path())?);
            let head = reader.fill_buf()?.to_vec();
            if archive::is_archive(&head) {
                let tmp = tempfile::Builder::new().prefix("tmp-").tempdir_in(&dir)?;
                archive::extract(reader, tmp.path(), url)?;
                let kept = tmp.keep();
                let target = dir.join(&digest);
                crate::cache::touch(&kept);
                if std::fs::rename(&kept, &target).is_err() {
                    let _ = std::fs::remove_dir_all(&kept);
                }
                Fetched::Dir(target)
            } else {
                let target = dir.join(format!("{digest}.txt"));
                file.persist(&target).map_err(|e| e.error)?;
                Fetched::Text(fs_err::read(&target)?)
            }
        };
        let tmp_meta = meta_path.with_extension("tmp");
        fs_err::write(&tmp_meta, validators)?;
        fs_err::rename(&tmp_meta, &meta_path)?;
        Ok(fetched)
    }
}

/// What a URL held.
pub(crate) enum Fetched {
    /// An archive, extracted here.
    Dir(PathBuf),
    /// A plain file: a Dockerfile.
    Text(Vec<u8>),
}

impl Fetched {
    fn exists(dir: &Path, digest: &str) -> bool {
        dir.join(digest).is_dir() || dir.join(format!("{digest}.txt")).is_file()
    }

    /// The cached content of `digest`, its last use recorded (for prune).
    fn load(dir: &Path, digest: &str) -> Option<Fetched> {
        let d = dir.join(digest);
        if d.is_dir() {
            crate::cache::touch(&d);
            return Some(Fetched::Dir(d));
        }
        let f = dir.join(format!("{digest}.txt"));
        let text = std::fs::read(&f).ok()?;
        crate::cache::touch(&f);
        Some(Fetched::Text(text))
    }
}

/// reqwest's error with its causes (TLS, DNS, timeouts say what they are).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_redirect() {
        "too many redirects".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// An error and its causes, `a: b: c`, without repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Run git; its stdout, or its stderr as the error.
fn git(dir: Option<&Path>, args: &[&str]) -> std::result::Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the `git` program is not installed".to_owned()
        } else {
            format!("cannot run git: {e}")
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(if msg.is_empty() {
            format!(
                "git {} failed ({})",
                args.first().unwrap_or(&""),
                out.status
            )
        } else {
            msg
        })
    }
}

/// Run git in `dir` with its progress on stderr passed, line by line, to
/// `status` (git redraws a line with `\r`: each redraw is a line). Its
/// stdout, or as the error the lines that are not progress (`fatal: …`).
fn git_with_progress(
    dir: &Path,
    args: &[&str],
    status: &dyn Fn(&str),
) -> std::result::Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the `git` program is not installed".to_owned()
        } else {
            format!("cannot run git: {e}")
        }
    })?;
    // stdout on a thread, stderr here: neither pipe can fill up and stall git.
    let mut stdout = child.stdout.take();
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut text);
        }
        text
    });
    let mut messages = Vec::new();
    if let Some(err) = child.stderr.take() {
        let mut reader = BufReader::new(err);
        let mut line = Vec::new();
        loop {
            line.clear();
            // Split on both \r (redraws) and \n.
            let mut byte = [0u8; 1];
            let mut eof = false;
            loop {
                match reader.read(&mut byte) {
                    Ok(0) | Err(_) => {
                        eof = true;
                        break;
                    }
                    Ok(_) if byte[0] == b'\r' || byte[0] == b'\n' => break,
                    Ok(_) => line.push(byte[0]),
                }
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if !text.is_empty() {
                if is_git_progress(text) {
                    status(text);
                } else {
                    messages.push(text.to_owned());
                }
            }
            if eof {
                break;
            }
        }
    }
    let exit = child.wait().map_err(|e| format!("waiting for git: {e}"))?;
    let stdout = out_thread.join().unwrap_or_default();
    if exit.success() {
        return Ok(stdout);
    }
    // git's own verdict (`fatal: …`, `error: …`) when it gave one.
    let verdict: Vec<&str> = messages
        .iter()
        .map(String::as_str)
        .filter(|m| m.starts_with("fatal:") || m.starts_with("error:"))
        .collect();
    Err(if !verdict.is_empty() {
        verdict.join("\n")
    } else if let Some(last) = messages.last() {
        last.clone()
    } else {
        format!("git {} failed ({exit})", args.first().unwrap_or(&""))
    })
}

/// A line of git's progress output (`Receiving objects:  45% (9/20)`,
/// `remote: Counting objects: 3, done.`), as opposed to a message.
fn is_git_progress(line: &str) -> bool {
    let line = line.strip_prefix("remote: ").unwrap_or(line);
    let Some((phase, rest)) = line.split_once(':') else {
        return false;
    };
    let rest = rest.trim_start();
    !phase.is_empty()
        && phase.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
        && !matches!(phase, "fatal" | "error" | "warning" | "hint")
        && rest.starts_with(|c: char| c.is_ascii_digit())
}

/// The commit `reference` names in `git ls-remote` output: the exact ref,
/// else a branch, else a tag (peeled to its commit).
fn pick_ref(ls: &str, reference: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = ls.lines().filter_map(|l| l.split_once('\t')).collect();
    let find = |name: &str| {
        refs.iter()
            .find(|(_, r)| *r == name)
            .map(|(h, _)| (*h).to_owned())
    };
    find(&format!("refs/tags/{reference}^{{}}"))
        .or_else(|| find(reference))
        .or_else(|| find(&format!("refs/heads/{reference}")))
        .or_else(|| find(&format!("refs/tags/{reference}")))
}

fn is_hex(s: &str, len: usize) -> bool {
    (len == 0 || s.len() == len) && !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

/// Remove `.git` (the repository and submodules' gitdir files): the
/// context is the checked-out tree only.
fn remove_git_dirs(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if entry.file_name() == ".git" {
                if ft.is_dir() {
                    fs_err::remove_dir_all(&path)?;
                } else {
                    fs_err::remove_file(&path)?;
                }
            } else if ft.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// `subdir` of `root`, resolved inside it (symlinks followed, never out).
pub(crate) fn subdir(root: &Path, sub: &str, source: &str) -> Result<PathBuf> {
    let fail = |reason| ContextError::Subdir {
        origin: source.to_owned(),
        subdir: sub.to_owned(),
        reason,
    };
    let resolved = crate::local::lexical(sub)
        .and_then(|rel| crate::local::resolve_in(root, sub, &rel, true, &mut Vec::new()))
        .map_err(|e| match e {
            ContextError::SymlinkLoop { .. } => fail("has a symlink loop"),
            ContextError::Escape { .. } => fail("is outside the context"),
            other => other,
        })?;
    let dir = root.join(resolved);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(fail("is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(fail("is not a directory")),
        Err(_) => Err(fail("does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdirs_follow_symlinks_inside_the_root_only() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/file"), "x").unwrap();
        symlink("a/b", root.join("to-b")).unwrap();
        symlink("..", root.join("a/b/up")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../..", root.join("a/out")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let sub = |s: &str| subdir(root, s, "src");
        let reason = |s: &str| match sub(s) {
            Err(ContextError::Subdir { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(sub("a/b").unwrap(), root.join("a/b"));
        assert_eq!(sub("/a/./b/").unwrap(), root.join("a/b"));
        assert_eq!(sub("to-b/up/b").unwrap(), root.join("a/b"));
        assert_eq!(sub("a/b/..").unwrap(), root.join("a"));
        assert_eq!(reason("abs"), "is outside the context");
        assert_eq!(reason("a/out"), "is outside the context");
        assert_eq!(reason(".."), "is outside the context");
        assert_eq!(reason("loop1"), "has a symlink loop");
        assert_eq!(reason("a/file"), "is not a directory");
        assert_eq!(reason("a/file/x"), "is not a directory");
        assert_eq!(reason("a/nope"), "does not exist");
    }

    #[test]
    fn classify_like_docker() {
        let git = |s: &str| matches!(Source::parse(s), Source::Git(_));
        assert!(git("https://example.invalid/o/r.git"));
        assert!(git("https://example.invalid/o/r.git#main:sub"));
        assert!(git("git@example.invalid:o/r.git"));
        assert!(git("git://example.invalid/o/r"));
        assert!(git("ssh://git@example.invalid/o/r"));
        assert!(git("github.com/o/r"));
        assert_eq!(
            Source::parse("https://example.invalid/ctx.tar.gz"),
            Source::Url("https://example.invalid/ctx.tar.gz".to_owned())
        );
        assert_eq!(Source::parse("-"), Source::Stdin);
        assert_eq!(
            Source::parse("no/such/dir"),
            Source::Dir(PathBuf::from("no/such/dir"))
        );
    }

    #[test]
    fn fragments() {
        let g = GitSource::parse("github.com/o/r#v1.0:docker/app");
        assert_eq!(g.url, "https://github.com/o/r");
        assert_eq!(g.reference.as_deref(), Some("v1.0"));
        assert_eq!(g.subdir.as_deref(), Some("docker/app"));
        let g = GitSource::parse("git@h:o/r.git#:sub");
        assert_eq!((g.reference, g.subdir.as_deref()), (None, Some("sub")));
        let g = GitSource::parse("git://h/r#refs/pull/7/head");
        assert_eq!(g.reference.as_deref(), Some("refs/pull/7/head"));
        assert_eq!(g.subdir, None);
        assert_eq!(g.to_string(), "git://h/r#refs/pull/7/head");
    }

    #[test]
    fn git_progress_lines_are_told_from_messages() {
        for p in [
            "Receiving objects:  45% (9/20)",
            "remote: Counting objects: 3, done.",
            "Resolving deltas: 100% (3/3), done.",
            "remote: Enumerating objects: 5, done.",
        ] {
            assert!(is_git_progress(p), "{p}");
        }
        for m in [
            "fatal: couldn't find remote ref nope",
            "error: 1 bytes of body are still expected",
            "From git://127.0.0.1:1/app",
            " * branch            main       -> FETCH_HEAD",
            "warning: 2 things",
        ] {
            assert!(!is_git_progress(m), "{m}");
        }
    }

    #[test]
    fn ls_remote_picking() {
        let ls = "aaaa\tHEAD\nbbbb\trefs/heads/main\ncccc\trefs/tags/v1\ndddd\trefs/tags/v1^{}\n";
        assert_eq!(pick_ref(ls, "HEAD").as_deref(), Some("aaaa"));
        assert_eq!(pick_ref(ls, "main").as_deref(), Some("bbbb"));
        assert_eq!(pick_ref(ls, "v1").as_deref(), Some("dddd"));
        assert_eq!(pick_ref(ls, "nope"), None);
    }
}
