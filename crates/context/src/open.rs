//! Opening any kind of context from `kiln build`'s CONTEXT argument.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::archive;
use crate::cache::CacheLock;
use crate::error::{ContextError, Result};
use crate::local::{Context, DockerfileSpec};
use crate::remote::{Fetched, Fetcher, GitSource, Progress, Source, subdir};

/// Opens build contexts of every kind — a directory, `-` (stdin), a git
/// URL, a tarball URL — the way `docker build` reads its arguments.
/// Remote sources are fetched once into `cache_dir` (the store's cache)
/// and reused while their ref or content is unchanged.
#[derive(Clone)]
pub struct Opener {
    fetcher: Fetcher,
    dockerfile: DockerfileSpec,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("cache_dir", &self.fetcher.cache_dir)
            .field("dockerfile", &self.dockerfile)
            .finish_non_exhaustive()
    }
}

/// A git repository's files in the cache (see [`Opener::git_tree`]).
#[derive(Debug, Clone)]
pub struct GitTree {
    /// The files: the checkout's root, or its sub-directory.
    pub context: Context,
    /// What was checked out: the commit id (or the short commit it was
    /// asked for by), with `.keep-git` when `.git` was kept. It changes
    /// whenever the files can.
    pub revision: String,
}

impl Opener {
    /// An opener that caches remote sources under `cache_dir`. Defaults:
    /// the default Dockerfile lookup, downloads up to 4 GiB, 30 s to
    /// connect, 60 s without data, 10 redirects.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Opener {
        Opener {
            fetcher: Fetcher {
                cache_dir: cache_dir.into(),
                max_download: 4 << 30,
                timeout: Duration::from_secs(30),
                read_timeout: Duration::from_secs(60),
                max_redirects: 10,
                progress: None,
                keep_git_dir: false,
            },
            dockerfile: DockerfileSpec::Default,
        }
    }

    /// Where the Dockerfile comes from (`-f`). For remote and stdin
    /// contexts a path is relative to the context root.
    #[must_use]
    pub fn dockerfile(mut self, spec: DockerfileSpec) -> Opener {
        self.dockerfile = spec;
        self
    }

    /// The largest download accepted, in bytes.
    #[must_use]
    pub fn max_download_size(mut self, bytes: u64) -> Opener {
        self.fetcher.max_download = bytes;
        self
    }

    /// How long to wait for a connection. There is no limit on a
    /// download's total time: large contexts on slow links are fine.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Opener {
        self.fetcher.timeout = timeout;
        self
    }

    /// How long a download may wait for the server: for the response's
    /// headers, and then for each read of its body (a server that stops
    /// sending is an error after this long). Default 60 s.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Opener {
        self.fetcher.read_timeout = timeout;
        self
    }

    /// How many HTTP redirects to follow.
    #[must_use]
    pub fn max_redirects(mut self, n: usize) -> Opener {
        self.fetcher.max_redirects = n;
        self
    }

    /// Keep the `.git` directory in git contexts (BuildKit's
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR` build arg); it is left out by
    /// default, like docker does.
    #[must_use]
    pub fn keep_git_dir(mut self, keep: bool) -> Opener {
        self.fetcher.keep_git_dir = keep;
        self
    }

    /// Report fetch progress to `f`.
    #[must_use]
    pub fn progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Opener {
        self.fetcher.progress = Some(Arc::new(f));
        self
    }

    /// Open the context named by `arg` (see [`Source::parse`]); `stdin` is
    /// read only when `arg` is `-`.
    pub fn open(&self, arg: &str, stdin: impl Read) -> Result<Context> {
        self.open_source(&Source::parse(arg), stdin)
    }

    /// Open a classified source.
    pub fn open_source(&self, source: &Source, stdin: impl Read) -> Result<Context> {
        if let Source::Dir(dir) = source {
            return Context::from_dir(dir, self.dockerfile.clone());
        }
        // Fetches and extractions happen under a shared hold on the cache,
        // kept by the context: a prune waits until the build is done.
        let lock = Arc::new(CacheLock::take(&self.fetcher.cache_dir, false)?);
        Ok(self.open_cached(source, stdin)?.hold_cache(lock))
    }

    /// Fetch a git repository's files into the cache, for `ADD GIT-URL`:
    /// the repository root or its `#REF:SUBDIR`, with no Dockerfile and no
    /// `.dockerignore` (BuildKit's git source applies none). `.git` is kept
    /// only with [`Opener::keep_git_dir`]. The cache stays held while the
    /// tree's context lives.
    pub fn git_tree(&self, src: &GitSource) -> Result<GitTree> {
        let lock = Arc::new(CacheLock::take(&self.fetcher.cache_dir, false)?);
        let checkout = self.fetcher.git(src)?;
        let revision = checkout
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let root = match &src.subdir {
            Some(s) => subdir(&checkout, s, &src.to_string())?,
            None => checkout,
        };
        Ok(GitTree {
            context: Context::files_only(&root)?.hold_cache(lock),
            revision,
        })
    }

    fn open_cached(&self, source: &Source, stdin: impl Read) -> Result<Context> {
        match source {
            Source::Dir(dir) => Context::from_dir(dir, self.dockerfile.clone()),
            Source::Stdin => {
                if matches!(self.dockerfile, DockerfileSpec::Text(_)) {
                    return Err(ContextError::Archive {
                        origin: "stdin".to_owned(),
                        reason:
                            "stdin can't be both the context and the Dockerfile (`-f -` with `-`)"
                                .to_owned(),
                    });
                }
                self.stdin(stdin)
            }
            Source::Git(g) => {
                let checkout = self.fetcher.git(g)?;
                let root = match &g.subdir {
                    Some(s) => subdir(&checkout, s, &g.to_string())?,
                    None => checkout,
                };
                inside(fetched_root(
                    Context::from_root(&root, self.remote_dockerfile(&root)?, None),
                    &root,
                )?)
            }
            Source::Url(url) => match self.fetcher.url(url)? {
                Fetched::Dir(root) => inside(fetched_root(
                    Context::from_root(&root, self.remote_dockerfile(&root)?, None),
                    &root,
                )?),
                Fetched::Text(text) => self.text_only(text),
            },
        }
    }

    fn stdin(&self, mut stdin: impl Read) -> Result<Context> {
        // Docker looks at the first 1 KiB to tell an archive from a Dockerfile.
        let mut head = Vec::with_capacity(1024);
        (&mut stdin).take(1024).read_to_end(&mut head)?;
        let mut reader = std::io::Cursor::new(head.clone()).chain(stdin);
        if !archive::is_archive(&head) {
            let mut text = Vec::new();
            reader.read_to_end(&mut text)?;
            return self.text_only(text);
        }
        let tmp = self.temp_dir()?;
        archive::extract(reader, tmp.path(), "stdin")?;
        let root = tmp.path().to_path_buf();
        inside(fetched_root(
            Context::from_root(&root, self.remote_dockerfile(&root)?, Some(Arc::new(tmp))),
            &root,
        )?)
    }

    /// A Dockerfile with an empty context (stdin or a URL holding text).
    fn text_only(&self, text: Vec<u8>) -> Result<Context> {
        let tmp = self.temp_dir()?;
        let root = tmp.path().to_path_buf();
        Context::from_root(&root, DockerfileSpec::Text(text), Some(Arc::new(tmp)))
    }

    fn temp_dir(&self) -> Result<tempfile::TempDir> {
        let dir = self.fetcher.cache_dir.join("tmp");
        fs_err::create_dir_all(&dir)?;
        Ok(tempfile::Builder::new().prefix("ctx-").tempdir_in(&dir)?)
    }

    /// `-f PATH` inside a fetched context: relative to its root, and
    /// never outside it.
    fn remote_dockerfile(&self, root: &Path) -> Result<DockerfileSpec> {
        Ok(match &self.dockerfile {
            DockerfileSpec::Path(p) => {
                let rel = crate::local::lexical(&p.to_string_lossy())?;
                DockerfileSpec::Path(root.join(rel))
            }
            other => other.clone(),
        })
    }
}

/// Errors about the Dockerfile of a fetched context name it relative to
/// the context (`build/Dockerfile`), not by its place in the cache.
fn fetched_root(opened: Result<Context>, root: &Path) -> Result<Context> {
    let relative = |path: PathBuf| {
        let real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        path.strip_prefix(root)
            .or_else(|_| path.strip_prefix(&real))
            .map_or_else(|_| path.clone(), Path::to_path_buf)
    };
    opened.map_err(|e| match e {
        ContextError::NoDockerfile { path } => ContextError::NoDockerfile {
            path: relative(path),
        },
        ContextError::DockerfileNotAFile { path } => ContextError::DockerfileNotAFile {
            path: relative(path),
        },
        other => other,
    })
}

/// A fetched context's Dockerfile and ignore file must be inside it: a
/// symlink in a repository or an archive must not make kiln read a file
/// of this machine.
fn inside(ctx: Context) -> Result<Context> {
    let root = ctx.root().to_path_buf();
    let dockerfile = ctx
        .dockerfile()
        .path
        .clone()
        .map(|p| (p, ctx.dockerfile().name.clone()));
    let ignore = ctx.ignore_file().map(|p| {
        let shown = p.strip_prefix(&root).unwrap_or(p).display().to_string();
        (p.to_path_buf(), shown)
    });
    for (path, shown) in [dockerfile, ignore].into_iter().flatten() {
        let real = std::fs::canonicalize(&path)?;
        if !real.starts_with(&root) {
            return Err(ContextError::Escape {
                path: shown.clone(),
                via: Some(PathBuf::from(shown)),
            });
        }
    }
    Ok(ctx)
}
