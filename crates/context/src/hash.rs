//! Content digests of context files, with a persistent stat cache: a file
//! whose (device, inode, size, mtime, ctime) is unchanged since it was last
//! hashed is not read again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::error::{ContextError, Result};

const MAGIC: &[u8; 16] = b"kiln-statcache1\n";

/// Path → (stamp, digest) as loaded from the cache file. Keyed by the
/// path's bytes (`OsString` hashes as one slice; `PathBuf` hashes
/// component by component, several times slower for 30,000 lookups).
type Loaded = HashMap<OsString, (Stamp, [u8; 32])>;
/// Path → (stamp, digest, racy: hashed too soon after a change to be saved),
/// for files hashed by this process.
type Fresh = HashMap<PathBuf, (Stamp, [u8; 32], bool)>;

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// A map from a file's path and stat to its content digest, kept in a file
/// between runs (in the store). Shared by all hashing threads.
///
/// What was loaded from the file is read without a lock (it never changes
/// while the cache is open), so a warm walk over an unchanged tree costs a
/// `stat` and a map lookup per file; only files hashed by this process go
/// through a mutex. [`StatCache::save`] writes nothing when no file was
/// hashed.
///
/// A file changed in the same clock tick as it was hashed could keep its
/// stat while its content changes (the "racy git" problem), so entries
/// whose mtime or ctime is within [`StatCache::racy_window`] of the moment
/// they were hashed are used for this run but not saved.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    loaded: Loaded,
    fresh: Mutex<Fresh>,
    racy: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How a [`StatCache`] was used since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Files whose digest came from the cache.
    pub hits: u64,
    /// Files that were read and hashed.
    pub misses: u64,
}

impl StatCache {
    /// Open the cache kept in `path` (created by [`StatCache::save`]; a
    /// missing file is an empty cache).
    pub fn open(path: impl Into<PathBuf>) -> Result<StatCache> {
        let path = path.into();
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| ContextError::StatCache {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(ContextError::StatCache {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        Ok(StatCache {
            path,
            loaded,
            fresh: Mutex::new(HashMap::new()),
            racy: Duration::from_secs(2),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Where to keep the cache of the context rooted at `context_root`,
    /// inside directory `dir`: one file per context root, so a build loads
    /// only the stamps of its own context (a small context's rebuild never
    /// reads the 30,000 entries of another one).
    pub fn file_for(dir: &Path, context_root: &Path) -> PathBuf {
        let h = Sha256::digest(context_root.as_os_str().as_bytes());
        dir.join(hex::encode(&h[..16]))
    }

    /// Files modified less than this long before they were hashed are not
    /// saved (default 2 s, safe for coarse file-system clocks). Tests of
    /// fresh trees may lower it.
    #[must_use]
    pub fn racy_window(mut self, window: Duration) -> StatCache {
        self.racy = window;
        self
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Number of files known.
    pub fn len(&self) -> usize {
        let fresh = self.fresh.lock().map_or(0, |f| {
            f.keys()
                .filter(|k| !self.loaded.contains_key(k.as_os_str()))
                .count()
        });
        self.loaded.len() + fresh
    }

    /// Whether no file is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the cache to its file atomically (temp file, fsync, rename),
    /// when this process hashed a file worth keeping; otherwise the file
    /// already says everything and is left alone (a no-op build writes
    /// nothing).
    pub fn save(&self) -> Result<()> {
        let bytes = {
            let fresh = self.fresh.lock().map_err(|_| ContextError::StatCache {
                path: self.path.clone(),
                reason: "a hashing thread panicked".to_owned(),
            })?;
            let news = fresh.iter().any(|(path, (stamp, digest, racy))| {
                !racy && self.loaded.get(path.as_os_str()) != Some(&(*stamp, *digest))
            });
            if !news {
                return Ok(());
            }
            encode(&self.loaded, &fresh)
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        {
            let mut f = fs_err::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs_err::rename(&tmp, &self.path)?;
        Ok(())
    }

    fn lookup(&self, path: &Path, stamp: &Stamp) -> Option<[u8; 32]> {
        match self.loaded.get(path.as_os_str()) {
            Some((s, digest)) if s == stamp => return Some(*digest),
            _ => {}
        }
        let fresh = self.fresh.lock().ok()?;
        match fresh.get(path) {
            Some((s, digest, _)) if s == stamp => Some(*digest),
            _ => None,
        }
    }

    fn insert(&self, path: PathBuf, stamp: Stamp, digest: [u8; 32]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let now = i128::try_from(now).unwrap_or(i128::MAX);
        let window = i128::try_from(self.racy.as_nanos()).unwrap_or(i128::MAX);
        let racy = stamp.mtime_ns.max(stamp.ctime_ns) + window >= now;
        if let Ok(mut fresh) = self.fresh.lock() {
            fresh.insert(path, (stamp, digest, racy));
        }
    }
}

/// The sha256 of a file's content, from the cache when its stamp matches.
pub(crate) fn file_digest(
    disk: &Path,
    stamp: &Stamp,
    cache: Option<&StatCache>,
) -> Result<[u8; 32]> {
    if let Some(cache) = cache
        && let Some(d) = cache.lookup(disk, stamp)
    {
        cache.hits.fetch_add(1, Ordering::Relaxed);
        return Ok(d);
    }
    let mut file = fs_err::File::open(disk)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if let Some(cache) = cache {
        cache.misses.fetch_add(1, Ordering::Relaxed);
        cache.insert(disk.to_path_buf(), *stamp, digest);
    }
    Ok(digest)
}

/// The loaded entries, overridden by this run's settled ones.
fn encode(loaded: &Loaded, fresh: &Fresh) -> Vec<u8> {
    let mut out = Vec::with_capacity((loaded.len() + fresh.len()) * 128);
    out.extend_from_slice(MAGIC);
    let settled = fresh
        .iter()
        .filter(|(_, (_, _, racy))| !racy)
        .map(|(p, (s, d, _))| (p, s, d));
    let kept = loaded
        .iter()
        .filter(|(p, _)| fresh.get(Path::new(p)).is_none_or(|(_, _, racy)| *racy))
        .map(|(p, (s, d))| (p.as_os_str(), s, d));
    for (path, s, digest) in settled.map(|(p, s, d)| (p.as_os_str(), s, d)).chain(kept) {
        let p = path.as_bytes();
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(&s.dev.to_le_bytes());
        out.extend_from_slice(&s.ino.to_le_bytes());
        out.extend_from_slice(&s.size.to_le_bytes());
        out.extend_from_slice(&s.mtime_ns.to_le_bytes());
        out.extend_from_slice(&s.ctime_ns.to_le_bytes());
        out.extend_from_slice(digest);
    }
    out
}

fn decode(bytes: &[u8]) -> std::result::Result<Loaded, String> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err("not a kiln stat cache (bad header)".to_owned());
    };
    // Records are at least 96 bytes plus their path: reserve once rather
    // than rehash the table as it grows.
    let mut map = HashMap::with_capacity(rest.len() / 140);
    let truncated = || "truncated record".to_owned();
    while !rest.is_empty() {
        let len = u64_of(take(&mut rest, 8).ok_or_else(truncated)?);
        let len = usize::try_from(len).map_err(|_| truncated())?;
        let path = take(&mut rest, len).ok_or_else(truncated)?;
        let rec = take(&mut rest, 8 * 3 + 16 * 2 + 32).ok_or_else(truncated)?;
        let stamp = Stamp {
            dev: u64_of(&rec[0..8]),
            ino: u64_of(&rec[8..16]),
            size: u64_of(&rec[16..24]),
            mtime_ns: i128_of(&rec[24..40]),
            ctime_ns: i128_of(&rec[40..56]),
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&rec[56..88]);
        map.insert(OsString::from_vec(path.to_vec()), (stamp, digest));
    }
    Ok(map)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (a, b) = rest.split_at(n);
    *rest = b;
    Some(a)
}
fn u64_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}
fn i128_of(b: &[u8]) -> i128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    i128::from_le_bytes(a)
}
