//! Content digests of context files, with a persistent stat cache: a file
//! whose (device, inode, size, mtime, ctime) is unchanged since it was last
//! hashed is not read again.
//!
//! The cache file is made to be used as read, with no per-entry work at
//! load: a header, a table of fixed-size records (path offset and length,
//! a hash of the path, the stamp, the digest) sorted by path, then the
//! paths. Loading reads the file into one buffer and builds an
//! open-addressing index of record numbers from the stored hashes; a
//! lookup hashes the path from its two parts (context root, relative
//! path) without joining them, and compares the record's path bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::error::{ContextError, Result};

/// The current format's header.
const MAGIC: &[u8; 16] = b"kiln-statcache2\n";
/// The first format's header (a path-keyed list): still a valid cache
/// file, of an older kiln; read as empty and replaced at the next save.
const MAGIC_V1: &[u8; 16] = b"kiln-statcache1\n";
/// Header, then the record count.
const HEAD: usize = 16 + 8;
/// Path offset and length (u32 each), path hash (u64), dev, ino, size
/// (u64 each), mtime and ctime in ns (i128 each), sha256.
const RECORD: usize = 8 + 8 + 24 + 32 + 32;

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
/// `stat` and an index probe per file; only files hashed by this process
/// go through a mutex. [`StatCache::save`] writes nothing when no file was
/// hashed.
///
/// A file changed in the same clock tick as it was hashed could keep its
/// stat while its content changes (the "racy git" problem), so entries
/// whose mtime or ctime is within [`StatCache::racy_window`] of the moment
/// they were hashed are used for this run but not saved.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    loaded: Table,
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
    /// missing file, or one of an older kiln's format, is an empty cache).
    pub fn open(path: impl Into<PathBuf>) -> Result<StatCache> {
        let path = path.into();
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => Table::load(bytes).map_err(|reason| ContextError::StatCache {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::default(),
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
                .filter(|k| self.loaded.find(&[k.as_os_str().as_bytes()]).is_none())
                .count()
        });
        self.loaded.count + fresh
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
                !racy
                    && self
                        .loaded
                        .find(&[path.as_os_str().as_bytes()])
                        .map(|i| self.loaded.entry(i))
                        != Some((*stamp, *digest))
            });
            if !news {
                return Ok(());
            }
            match encode(&self.loaded, &fresh) {
                Some(bytes) => bytes,
                None => return Ok(()),
            }
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

    /// The digest known for `root.join(rel)` with this stamp.
    fn lookup(&self, root: &Path, rel: &Path, stamp: &Stamp) -> Option<[u8; 32]> {
        let parts = joined(root, rel);
        if let Some(i) = self.loaded.find(&parts) {
            let (s, digest) = self.loaded.entry(i);
            if s == *stamp {
                return Some(digest);
            }
        }
        let fresh = self.fresh.lock().ok()?;
        if fresh.is_empty() {
            return None;
        }
        match fresh.get(&root.join(rel)) {
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

/// `root.join(rel)`'s bytes as parts (root, a `/` when needed, rel), for
/// hashing and comparing without making the joined path.
fn joined<'a>(root: &'a Path, rel: &'a Path) -> [&'a [u8]; 3] {
    let root = root.as_os_str().as_bytes();
    let sep: &[u8] = if root.ends_with(b"/") { b"" } else { b"/" };
    [root, sep, rel.as_os_str().as_bytes()]
}

/// The sha256 of the file `rel` under `root`, from the cache when its
/// stamp matches.
pub(crate) fn file_digest(
    root: &Path,
    rel: &Path,
    stamp: &Stamp,
    cache: Option<&StatCache>,
) -> Result<[u8; 32]> {
    if let Some(cache) = cache
        && let Some(d) = cache.lookup(root, rel, stamp)
    {
        cache.hits.fetch_add(1, Ordering::Relaxed);
        return Ok(d);
    }
    let disk = root.join(rel);
    let mut file = fs_err::File::open(&disk)?;
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
        cache.insert(disk, *stamp, digest);
    }
    Ok(digest)
}

/// A loaded cache file: its bytes as read, and an index over them.
#[derive(Debug, Default)]
struct Table {
    bytes: Vec<u8>,
    count: usize,
    /// Open addressing by path hash: record number + 1, 0 for empty; a
    /// power of two at least twice the record count.
    slots: Vec<u32>,
}

impl Table {
    /// Check the layout (header, record table, every path inside the
    /// file) and index the records by their stored hashes.
    fn load(bytes: Vec<u8>) -> std::result::Result<Table, String> {
        if bytes.starts_with(MAGIC_V1) {
            return Ok(Table::default());
        }
        if !bytes.starts_with(MAGIC) {
            return Err("not a kiln stat cache (bad header)".to_owned());
        }
        let truncated = || "truncated record".to_owned();
        let count = bytes.get(16..HEAD).map(u64_of).ok_or_else(truncated)?;
        let count = usize::try_from(count).map_err(|_| truncated())?;
        let table_end = count
            .checked_mul(RECORD)
            .and_then(|n| n.checked_add(HEAD))
            .filter(|&n| n <= bytes.len())
            .ok_or_else(truncated)?;
        if u32::try_from(count).is_err() || u32::try_from(bytes.len()).is_err() {
            return Err("too large".to_owned());
        }
        let size = (count * 2).next_power_of_two().max(8);
        let mut slots = vec![0u32; size];
        let mask = size - 1;
        // `count` fits a u32 (checked above): so does each number + 1.
        for (i, number) in (0..count).zip(1u32..) {
            let rec = &bytes[HEAD + i * RECORD..HEAD + (i + 1) * RECORD];
            let off = u32_of(&rec[0..4]) as usize;
            let len = u32_of(&rec[4..8]) as usize;
            if off < table_end || off + len > bytes.len() {
                return Err(truncated());
            }
            let mut at = slot_of(u64_of(&rec[8..16]), mask);
            while slots[at] != 0 {
                at = (at + 1) & mask;
            }
            slots[at] = number;
        }
        Ok(Table {
            bytes,
            count,
            slots,
        })
    }

    fn record(&self, i: usize) -> &[u8] {
        &self.bytes[HEAD + i * RECORD..HEAD + (i + 1) * RECORD]
    }

    fn path(&self, i: usize) -> &[u8] {
        let rec = self.record(i);
        let off = u32_of(&rec[0..4]) as usize;
        let len = u32_of(&rec[4..8]) as usize;
        &self.bytes[off..off + len]
    }

    fn entry(&self, i: usize) -> (Stamp, [u8; 32]) {
        let rec = self.record(i);
        let stamp = Stamp {
            dev: u64_of(&rec[16..24]),
            ino: u64_of(&rec[24..32]),
            size: u64_of(&rec[32..40]),
            mtime_ns: i128_of(&rec[40..56]),
            ctime_ns: i128_of(&rec[56..72]),
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&rec[72..104]);
        (stamp, digest)
    }

    /// The record whose path is the concatenation of `parts`.
    fn find(&self, parts: &[&[u8]]) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        let hash = path_hash(parts);
        let mask = self.slots.len() - 1;
        let mut at = slot_of(hash, mask);
        loop {
            let i = (*self.slots.get(at)? as usize).checked_sub(1)?;
            if u64_of(&self.record(i)[8..16]) == hash && concat_eq(self.path(i), parts) {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
    }
}

fn slot_of(hash: u64, mask: usize) -> usize {
    // The high bits are the best mixed.
    (hash >> 32) as usize & mask
}

/// Whether `stored` is the concatenation of `parts`.
fn concat_eq(mut stored: &[u8], parts: &[&[u8]]) -> bool {
    for part in parts {
        match stored.strip_prefix(*part) {
            Some(rest) => stored = rest,
            None => return false,
        }
    }
    stored.is_empty()
}

/// A 64-bit hash of the concatenation of `parts` (the same however the
/// bytes are split): FxHash-style over 8-byte words, with a final mix.
/// Part of the file format: changing it needs a new [`MAGIC`].
fn path_hash(parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut word = [0u8; 8];
    let mut filled = 0;
    let mut total: u64 = 0;
    for part in parts {
        total += part.len() as u64;
        let mut bytes = *part;
        if filled > 0 {
            let n = (8 - filled).min(bytes.len());
            word[filled..filled + n].copy_from_slice(&bytes[..n]);
            filled += n;
            bytes = &bytes[n..];
            if filled < 8 {
                continue;
            }
            h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = (h.rotate_left(5) ^ u64_of(c)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        filled = rest.len();
    }
    if filled > 0 {
        word[filled..].fill(0);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h = (h.rotate_left(5) ^ total).wrapping_mul(K);
    // murmur3's fmix64.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The loaded entries, overridden by this run's settled ones, sorted by
/// path. `None` when the paths pass the format's 4 GiB (such a context is
/// hashed afresh every time, never wrongly).
fn encode(loaded: &Table, fresh: &Fresh) -> Option<Vec<u8>> {
    let mut all: Vec<(&[u8], Stamp, [u8; 32])> = fresh
        .iter()
        .filter(|(_, (_, _, racy))| !racy)
        .map(|(p, (s, d, _))| (p.as_os_str().as_bytes(), *s, *d))
        .collect();
    for i in 0..loaded.count {
        let path = loaded.path(i);
        let replaced = fresh
            .get(Path::new(std::ffi::OsStr::from_bytes(path)))
            .is_some_and(|(_, _, racy)| !racy);
        if !replaced {
            let (s, d) = loaded.entry(i);
            all.push((path, s, d));
        }
    }
    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    let paths: usize = all.iter().map(|e| e.0.len()).sum();
    let mut out = Vec::with_capacity(HEAD + all.len() * RECORD + paths);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(all.len() as u64).to_le_bytes());
    let mut off = HEAD + all.len() * RECORD;
    for (path, s, digest) in &all {
        let (Ok(o), Ok(l)) = (u32::try_from(off), u32::try_from(path.len())) else {
            return None;
        };
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&path_hash(&[path]).to_le_bytes());
        out.extend_from_slice(&s.dev.to_le_bytes());
        out.extend_from_slice(&s.ino.to_le_bytes());
        out.extend_from_slice(&s.size.to_le_bytes());
        out.extend_from_slice(&s.mtime_ns.to_le_bytes());
        out.extend_from_slice(&s.ctime_ns.to_le_bytes());
        out.extend_from_slice(digest);
        off += path.len();
    }
    u32::try_from(off).ok()?;
    for (path, _, _) in &all {
        out.extend_from_slice(path);
    }
    Some(out)
}

fn u64_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}
fn u32_of(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}
fn i128_of(b: &[u8]) -> i128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    i128::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_hash_is_the_same_however_the_path_is_split() {
        let path = b"/some/context/root/dir/a-file-name.txt";
        let whole = path_hash(&[path]);
        for i in 0..=path.len() {
            for j in i..=path.len() {
                assert_eq!(path_hash(&[&path[..i], &path[i..j], &path[j..]]), whole);
            }
        }
        assert_ne!(path_hash(&[b"/a/b"]), path_hash(&[b"/a/c"]));
        assert_ne!(path_hash(&[b"/a"]), path_hash(&[b"/a\0"]));
    }

    #[test]
    fn a_saved_table_finds_each_path_and_only_those() {
        let stamp = |n: u64| Stamp {
            dev: 1,
            ino: n,
            size: n * 10,
            mtime_ns: -5,
            ctime_ns: i128::from(n) << 70,
        };
        let mut fresh = Fresh::new();
        for n in 0..500u64 {
            let path = PathBuf::from(format!("/ctx/d{}/f{n}", n % 7));
            fresh.insert(path, (stamp(n), [n.to_le_bytes()[0]; 32], n == 3));
        }
        let table = Table::load(encode(&Table::default(), &fresh).unwrap()).unwrap();
        assert_eq!(table.count, 499, "the racy one is not saved");
        for n in 0..500u64 {
            let rel = format!("d{}/f{n}", n % 7);
            let found = table
                .find(&joined(Path::new("/ctx"), Path::new(&rel)))
                .map(|i| table.entry(i));
            if n == 3 {
                assert_eq!(found, None);
            } else {
                assert_eq!(found, Some((stamp(n), [n.to_le_bytes()[0]; 32])));
            }
        }
        assert_eq!(table.find(&[b"/ctx/d0/f7x"]), None);
        assert_eq!(table.find(&[b"/ctx/d0/f"]), None);
        // The root given with a trailing slash is the same path.
        assert!(
            table
                .find(&joined(Path::new("/ctx/"), Path::new("d1/f1")))
                .is_some()
        );
        // Reloaded and merged with nothing new: the same bytes.
        let again = encode(&table, &Fresh::new()).unwrap();
        assert_eq!(
            again,
            encode(&Table::load(again.clone()).unwrap(), &Fresh::new()).unwrap()
        );
    }

    #[test]
    fn damaged_tables_are_refused() {
        let mut fresh = Fresh::new();
        fresh.insert(
            PathBuf::from("/a/b"),
            (
                Stamp {
                    dev: 0,
                    ino: 0,
                    size: 0,
                    mtime_ns: 0,
                    ctime_ns: 0,
                },
                [0; 32],
                false,
            ),
        );
        let good = encode(&Table::default(), &fresh).unwrap();
        assert!(Table::load(good.clone()).is_ok());
        assert!(
            Table::load(good[..good.len() - 1].to_vec()).is_err(),
            "path cut"
        );
        assert!(
            Table::load(good[..HEAD + 10].to_vec()).is_err(),
            "record cut"
        );
        let mut bad = good.clone();
        bad[HEAD..HEAD + 4].copy_from_slice(&4u32.to_le_bytes());
        assert!(Table::load(bad).is_err(), "path inside the record table");
        assert!(
            Table::load(MAGIC_V1.to_vec()).unwrap().count == 0,
            "old format: empty"
        );
    }
}
