//! The cache of fetched remote contexts (an [`Opener`](crate::Opener)'s
//! cache directory, `ROOT/contexts` in kiln) and pruning it.
//!
//! ```text
//! git/<url hash>/<commit>     a checkout (no .git), one per commit
//! git/<url hash>/tmp-*        a fetch under way (or interrupted)
//! url/<url hash>/<sha256>     an extracted tarball, by the download's digest
//! url/<url hash>/<sha256>.txt a URL that held a Dockerfile
//! url/<url hash>/validators   the latest download's digest, ETag, Last-Modified
//! tmp/ctx-*                   contexts extracted from stdin, for one build
//! lock                        flock: shared while a context is open, exclusive to prune
//! ```
//!
//! An entry's modification time is its last use: opening it touches it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{ContextError, Result};

/// What [`prune_cache`] removes.
#[derive(Debug, Clone, Default)]
pub struct CachePruneOptions {
    /// Remove entries not used for at least this long; `None` removes
    /// every entry.
    pub unused_for: Option<Duration>,
    /// Keep the most recently used entries up to this many bytes in all,
    /// whatever their age.
    pub keep_bytes: Option<u64>,
}

/// What [`prune_cache`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePruneReport {
    /// Cached remote contexts removed (git checkouts, downloads).
    pub entries: u64,
    /// Bytes freed, leftovers of interrupted fetches included.
    pub freed: u64,
}

/// A hold on the cache: shared while a fetched context is in use,
/// exclusive while pruning. Released on drop.
#[derive(Debug)]
pub(crate) struct CacheLock {
    _file: File,
}

impl CacheLock {
    pub(crate) fn take(cache_dir: &Path, exclusive: bool) -> Result<CacheLock> {
        use rustix::fs::FlockOperation as Op;
        fs_err::create_dir_all(cache_dir)?;
        let path = cache_dir.join("lock");
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?
            .into_parts()
            .0;
        let op = if exclusive {
            Op::LockExclusive
        } else {
            Op::LockShared
        };
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(CacheLock { _file: file }),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(ContextError::Io(std::io::Error::new(
                        std::io::Error::from(e).kind(),
                        format!("locking {}: {e}", path.display()),
                    )));
                }
            }
        }
    }
}

/// Record a use of a cache entry (its mtime). Best effort: a cache entry
/// whose time can't be set is only pruned earlier than it could be.
pub(crate) fn touch(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// One removable thing in the cache.
struct Item {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

fn size_of(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p).map_or(0, |rd| rd.flatten().map(|e| size_of(&e.path())).sum())
}

fn remove(p: &Path) -> Result<()> {
    let r = if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        fs_err::remove_dir_all(p)
    } else {
        fs_err::remove_file(p)
    };
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => Ok(other?),
    }
}

fn children(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |rd| {
            let mut v: Vec<_> = rd
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect();
            v.sort();
            v
        },
    )
}

/// Remove cached remote contexts from `cache_dir` as `opts` says, and
/// always the leftovers of interrupted fetches and stdin extractions.
/// Waits until no context from the cache is open (a build holds its
/// context until it ends), so nothing in use is ever removed.
pub fn prune_cache(cache_dir: &Path, opts: &CachePruneOptions) -> Result<CachePruneReport> {
    let mut report = CachePruneReport::default();
    if !cache_dir.is_dir() {
        return Ok(report);
    }
    let _lock = CacheLock::take(cache_dir, true)?;
    let mut leftovers = Vec::new();
    let mut items = Vec::new();
    for (kind, is_git) in [("git", true), ("url", false)] {
        for (_, repo) in children(&cache_dir.join(kind)) {
            for (name, path) in children(&repo) {
                let leftover = name.starts_with("tmp-")
                    || name.starts_with(".tmp")
                    || name == "validators.tmp";
                if leftover {
                    leftovers.push(path);
                } else if is_git || name != "validators" {
                    let used = std::fs::symlink_metadata(&path)
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    items.push(Item {
                        size: size_of(&path),
                        path,
                        used,
                    });
                }
            }
        }
    }
    leftovers.extend(children(&cache_dir.join("tmp")).into_iter().map(|(_, p)| p));
    for p in leftovers {
        report.freed += size_of(&p);
        remove(&p)?;
    }

    // Newest first: the budget of keep_bytes goes to the latest used.
    items.sort_by_key(|i| std::cmp::Reverse(i.used));
    let now = SystemTime::now();
    let mut kept = 0u64;
    for item in items {
        let old_enough = opts.unused_for.is_none_or(|d| {
            now.duration_since(item.used)
                .is_ok_and(|unused| unused >= d)
        });
        let in_budget = opts
            .keep_bytes
            .is_some_and(|limit| kept + item.size <= limit);
        if !old_enough || in_budget {
            kept += item.size;
            continue;
        }
        remove(&item.path)?;
        report.entries += 1;
        report.freed += item.size;
    }

    // Validators of a removed download would make the next request
    // conditional on content kiln no longer has; empty folders go too.
    for (kind, is_url) in [("git", false), ("url", true)] {
        for (_, repo) in children(&cache_dir.join(kind)) {
            if is_url {
                let validators = repo.join("validators");
                let digest = std::fs::read_to_string(&validators).ok().and_then(|v| {
                    v.lines()
                        .find_map(|l| l.strip_prefix("digest "))
                        .map(str::to_owned)
                });
                let present = digest.is_some_and(|d| {
                    repo.join(&d).exists() || repo.join(format!("{d}.txt")).exists()
                });
                if validators.exists() && !present {
                    report.freed += size_of(&validators);
                    remove(&validators)?;
                }
            }
            if children(&repo).is_empty() {
                let _ = std::fs::remove_dir(&repo);
            }
        }
    }
    Ok(report)
}
