//! Garbage collection: `kiln prune`.

use std::collections::HashSet;
use std::path::Path;

use kiln_oci::Digest;

use crate::db::{CACHE, COMPRESSED, IMAGES, all_bytes, decode};
use crate::error::{Result, StoreError};
use crate::images::ImageRecord;
use crate::{CacheEntry, Store, fsutil};

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Also remove images without a name (dangling) — always done — and the
    /// whole build cache (`-a`).
    pub all: bool,
    /// With `all`: keep the most recently used build cache up to this many
    /// bytes.
    pub keep_storage: Option<u64>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Image records removed (dangling images).
    pub images: Vec<Digest>,
    /// Build-cache entries removed.
    pub cache_entries: u64,
    /// Blobs removed.
    pub blobs: u64,
    /// Snapshots removed.
    pub snapshots: u64,
    /// Bytes freed on disk.
    pub freed: u64,
}

fn dir_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p).map_or(0, |rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
}

impl Store {
    /// Remove what nothing references. Waits for operations that hold a
    /// [`Lease`](crate::Lease) to finish.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let gc_lock = self.root.join("gc.lock");
        let _excl = fsutil::lock(&gc_lock, true, true)?.ok_or_else(|| {
            StoreError::io("lock", &gc_lock, std::io::ErrorKind::WouldBlock.into())
        })?;
        self.gc_locked(opts)
    }

    /// Delete unreferenced blobs and snapshots if no other process is
    /// working on the store right now (used after `rmi`); returns `None`
    /// when the store was busy.
    pub fn try_collect(&self) -> Result<Option<PruneReport>> {
        let gc_lock = self.root.join("gc.lock");
        let Some(_excl) = fsutil::lock(&gc_lock, true, false)? else {
            return Ok(None);
        };
        self.gc_locked(&PruneOptions::default()).map(Some)
    }

    fn gc_locked(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        // Images of running containers are roots, named or not (registering
        // a container needs a lease, so none starts while we run).
        let running: Vec<ImageRecord> = self
            .containers()?
            .into_iter()
            .filter_map(|c| c.image)
            .collect();
        let db = self.db()?;
        // 1. Records: dangling images, and with -a the build cache.
        let (removed, cache_removed) = db.write(|txn| {
            let mut images = txn.open_table(IMAGES)?;
            let mut removed = Vec::new();
            for (k, v) in all_bytes(&images)? {
                let r: ImageRecord = decode("image", &v)?;
                if r.tags.is_empty() && !running.iter().any(|i| i.config == r.config) {
                    images.remove(k.as_str())?;
                    removed.push(r.config);
                }
            }
            let mut cache = txn.open_table(CACHE)?;
            let mut cache_removed = 0;
            if opts.all {
                let mut entries: Vec<(String, CacheEntry)> = all_bytes(&cache)?
                    .into_iter()
                    .map(|(k, v)| decode("cache entry", &v).map(|e| (k, e)))
                    .collect::<std::result::Result<_, _>>()?;
                entries.sort_by_key(|e| std::cmp::Reverse(e.1.last_used));
                let mut kept = 0u64;
                for (k, e) in entries {
                    let keep = opts
                        .keep_storage
                        .is_some_and(|limit| kept + e.layer_size <= limit);
                    if keep {
                        kept += e.layer_size;
                    } else {
                        cache.remove(k.as_str())?;
                        cache_removed += 1;
                    }
                }
            }
            if !removed.is_empty() {
                txn.open_table(crate::db::META)?
                    .insert("index_dirty", &b"1"[..])?;
            }
            Ok((removed, cache_removed))
        })?;
        report.images = removed;
        report.cache_entries = cache_removed;
        if !report.images.is_empty() {
            self.write_index(&db)?;
        }

        // 2. Reachability.
        let (images, cache, compressed) = db.read(|txn| {
            let images: Vec<ImageRecord> = all_bytes(&txn.open_table(IMAGES)?)?
                .into_iter()
                .map(|(_, v)| decode("image", &v))
                .collect::<std::result::Result<_, _>>()?;
            let cache: Vec<CacheEntry> = all_bytes(&txn.open_table(CACHE)?)?
                .into_iter()
                .map(|(_, v)| decode("cache entry", &v))
                .collect::<std::result::Result<_, _>>()?;
            let compressed: Vec<(String, (Digest, u64))> = all_bytes(&txn.open_table(COMPRESSED)?)?
                .into_iter()
                .map(|(k, v)| decode("compressed blob", &v).map(|d| (k, d)))
                .collect::<std::result::Result<_, _>>()?;
            Ok((images, cache, compressed))
        })?;
        drop(db);
        let mut blobs: HashSet<String> = HashSet::new();
        let mut snaps: HashSet<String> = HashSet::new();
        for r in images.iter().chain(&running) {
            blobs.insert(r.manifest.hex().to_owned());
            blobs.insert(r.config.hex().to_owned());
            for l in &r.layers {
                blobs.insert(l.digest.hex().to_owned());
                snaps.insert(l.diff_id.hex().to_owned());
            }
        }
        for e in &cache {
            if let Some(d) = &e.layer_digest {
                blobs.insert(d.hex().to_owned());
            }
            if let Some(d) = &e.diff_id {
                snaps.insert(d.hex().to_owned());
                blobs.insert(d.hex().to_owned());
            }
        }
        let mut stale_compressed = Vec::new();
        for (key, (d, _)) in &compressed {
            let source = key.split('|').next().unwrap_or("");
            let source_hex = source.split_once(':').map_or(source, |(_, h)| h);
            if blobs.contains(source_hex) {
                blobs.insert(d.hex().to_owned());
            } else {
                stale_compressed.push(key.clone());
            }
        }
        if !stale_compressed.is_empty() {
            let db = self.db()?;
            db.write(|txn| {
                let mut t = txn.open_table(COMPRESSED)?;
                for k in &stale_compressed {
                    t.remove(k.as_str())?;
                }
                Ok(())
            })?;
        }

        // 3. Sweep.
        for alg in ["sha256", "sha512"] {
            let dir = self.oci_dir().join("blobs").join(alg);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !blobs.contains(&name) {
                    let size = e.metadata().map_or(0, |m| m.len());
                    std::fs::remove_file(e.path())
                        .map_err(|err| StoreError::io("remove blob", e.path(), err))?;
                    report.blobs += 1;
                    report.freed += size;
                }
            }
        }
        let snap_dir = self.root.join("snapshots");
        if let Ok(rd) = std::fs::read_dir(&snap_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !snaps.contains(&name) {
                    report.freed += dir_size(&e.path());
                    std::fs::remove_dir_all(e.path())
                        .map_err(|err| StoreError::io("remove snapshot", e.path(), err))?;
                    report.snapshots += 1;
                }
            }
        }
        // Leftovers of interrupted operations (nothing runs: we hold the
        // exclusive GC lock).
        if let Ok(rd) = std::fs::read_dir(self.tmp_dir()) {
            for e in rd.flatten() {
                report.freed += dir_size(&e.path());
                let p = e.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|err| StoreError::io("remove", &p, err))?;
            }
        }
        Ok(report)
    }
}
