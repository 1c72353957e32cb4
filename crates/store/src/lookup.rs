//! The lookup cache (`ROOT/lookup-cache.json`): image names that
//! [`Store::open_and_resolve`] resolved, valid while the database is
//! unchanged, so that `kiln run` of the same image again opens no database.
//!
//! Opening and closing the redb database writes to it (redb sets and clears
//! its recovery flag and saves its allocator state: three fsyncs, and half
//! a megabyte copied and parsed) even when nothing else is written: more
//! than all the rest of `kiln run` on a disk that syncs slowly.
//!
//! Validity: every write transaction ([`crate::db::Db::write`]) first bumps
//! a generation number kept in `db.lock` (written in place under the lock,
//! so no block is freed). An entry is used only when, under `db.lock`, the
//! generation, the database file's inode, size, mtime and ctime, and the
//! boot id all match what they were when the entry was made (also under
//! the lock, after the database was closed). The generation catches every
//! write by this kiln; the file's times catch writes by a kiln without the
//! generation; the boot id covers a crash that lost the (never fsynced)
//! generation while the database's commit was durable. Nothing here is
//! needed for correctness: a miss is the database lookup.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Store;
use crate::images::ImageRecord;

/// At most this many names are kept (the oldest go first).
const MAX_ENTRIES: usize = 32;

/// What the database looked like when an entry was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    boot_id: String,
    generation: u64,
    /// inode, size, mtime (s, ns), ctime (s, ns) of `kiln.redb`.
    file: [i64; 6],
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    stamp: Option<Stamp>,
    /// Name as given → record, with the order of insertion.
    entries: BTreeMap<String, (u64, ImageRecord)>,
}

impl Store {
    fn lookup_cache_path(&self) -> PathBuf {
        self.root.join("lookup-cache.json")
    }

    /// The database's current [`Stamp`]: call with `db.lock` held (its
    /// file is `lock`) and the database closed.
    pub(crate) fn db_stamp(&self, lock: &File) -> Option<Stamp> {
        let meta = std::fs::metadata(self.root.join("kiln.redb")).ok()?;
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        Some(Stamp {
            boot_id: boot_id.trim().to_owned(),
            generation: read_generation(lock),
            file: [
                i64::try_from(meta.ino()).ok()?,
                i64::try_from(meta.size()).ok()?,
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            ],
        })
    }

    /// The record `what` resolved to, if the cache has it and the database
    /// has not changed since. Takes `db.lock` for the check.
    pub(crate) fn cached_lookup(&self, what: &str) -> Option<ImageRecord> {
        let bytes = std::fs::read(self.lookup_cache_path()).ok()?;
        let cache: CacheFile = serde_json::from_slice(&bytes).ok()?;
        let (_, record) = cache.entries.get(what)?;
        let lock = crate::fsutil::lock(&self.root.join("db.lock"), true, true).ok()??;
        let now = self.db_stamp(lock.file())?;
        (cache.stamp.as_ref() == Some(&now)).then(|| record.clone())
    }

    /// Remember that `what` resolved to `record` in the database whose
    /// stamp is `stamp` (taken with the database closed, `db.lock` still
    /// held by the caller). Best effort: a cache that cannot be written
    /// only costs the next lookup a database open.
    pub(crate) fn remember_lookup(&self, stamp: Stamp, what: &str, record: &ImageRecord) {
        let path = self.lookup_cache_path();
        let mut cache: CacheFile = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if cache.stamp.as_ref() != Some(&stamp) {
            cache = CacheFile {
                stamp: Some(stamp),
                entries: BTreeMap::new(),
            };
        }
        let next = cache
            .entries
            .values()
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0);
        cache
            .entries
            .insert(what.to_owned(), (next, record.clone()));
        while cache.entries.len() > MAX_ENTRIES {
            let oldest = cache
                .entries
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                cache.entries.remove(&k);
            }
        }
        let Ok(bytes) = serde_json::to_vec(&cache) else {
            return;
        };
        // Temp file and rename, no fsync: a reader never sees half a file,
        // and after a crash the boot id no longer matches anyway.
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, bytes).is_err() || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The database generation kept in `db.lock` (0 when never written).
pub(crate) fn read_generation(lock: &File) -> u64 {
    let mut buf = [0u8; 8];
    match lock.read_exact_at(&mut buf, 0) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => 0,
    }
}

/// Bump the generation (call with `db.lock` held, before a commit).
pub(crate) fn bump_generation(lock: &File) -> std::io::Result<()> {
    let next = read_generation(lock).wrapping_add(1);
    lock.write_all_at(&next.to_le_bytes(), 0)
}
