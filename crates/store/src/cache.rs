//! The build-cache index: cache key → the result of a step.

use kiln_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::db::{CACHE, STEPS, all_bytes, decode, encode};
use crate::error::Result;

/// How stale (seconds) [`CacheEntry::last_used`] may get before a hit
/// writes the new time: prune orders entries by it, and an hour is fine
/// for that, while writing it on every hit would make every no-op rebuild
/// commit one database transaction per step.
pub const LAST_USED_GRANULARITY: i64 = 3600;

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The layer the step made (its uncompressed blob; the snapshot is
    /// `Store::snapshot_path(diff_id)`), or `None` for steps that change
    /// only metadata.
    pub diff_id: Option<Digest>,
    /// The layer's blob digest (equal to `diff_id` for local layers).
    pub layer_digest: Option<Digest>,
    /// The layer's blob size.
    #[serde(default)]
    pub layer_size: u64,
    /// The key's pre-image (its canonical encoding), so that a later miss
    /// can say which input changed.
    pub pre_image: String,
    /// Anything else the solver wants to keep with the result (JSON).
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Unix seconds when recorded.
    pub created: i64,
    /// Unix seconds when last hit (to within [`LAST_USED_GRANULARITY`]).
    pub last_used: i64,
}

impl Store {
    /// Look up a cache key; a hit updates its last-used time when that is
    /// more than [`LAST_USED_GRANULARITY`] old (so a rebuild served from
    /// the cache only reads the database). Entries whose layer blob has
    /// gone are treated as misses (and removed).
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let db = self.db()?;
        let now = chrono::Utc::now().timestamp();
        let found = db.read(|txn| {
            let t = txn.open_table(CACHE)?;
            match t.get(key)? {
                Some(bytes) => Ok(Some(decode::<CacheEntry>("cache entry", bytes.value())?)),
                None => Ok(None),
            }
        })?;
        let Some(mut e) = found else {
            return Ok(None);
        };
        let gone = e.layer_digest.as_ref().is_some_and(|d| !self.has_blob(d));
        if !gone && now.saturating_sub(e.last_used) < LAST_USED_GRANULARITY {
            return Ok(Some(e));
        }
        db.write(|txn| {
            let mut t = txn.open_table(CACHE)?;
            if gone {
                t.remove(key)?;
                return Ok(None);
            }
            e.last_used = now;
            t.insert(key, encode(&e).as_slice())?;
            Ok(Some(e))
        })
    }

    /// Record a step's result under its key.
    pub fn cache_put(&self, key: &str, entry: &CacheEntry) -> Result<()> {
        let db = self.db()?;
        db.write(|txn| {
            txn.open_table(CACHE)?
                .insert(key, encode(entry).as_slice())?;
            Ok(())
        })
    }

    /// Every cache entry (key, entry).
    pub fn cache_entries(&self) -> Result<Vec<(String, CacheEntry)>> {
        let db = self.db()?;
        db.read(|txn| {
            all_bytes(&txn.open_table(CACHE)?)?
                .into_iter()
                .map(|(k, v)| decode("cache entry", &v).map(|e| (k, e)))
                .collect()
        })
    }

    /// The pre-image (as recorded, usually JSON) that build step `step` had
    /// in the last build that recorded it (`kiln build --explain`).
    pub fn step_preimage(&self, step: &str) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        db.read(|txn| {
            Ok(txn
                .open_table(STEPS)?
                .get(step)?
                .map(|v| v.value().to_vec()))
        })
    }

    /// Remember build step `step`'s pre-image for the next build's
    /// `--explain`. Writes only when it differs from what is recorded.
    pub fn set_step_preimage(&self, step: &str, preimage: &[u8]) -> Result<()> {
        let db = self.db()?;
        let same = db.read(|txn| {
            Ok(txn
                .open_table(STEPS)?
                .get(step)?
                .is_some_and(|v| v.value() == preimage))
        })?;
        if same {
            return Ok(());
        }
        db.write(|txn| {
            txn.open_table(STEPS)?.insert(step, preimage)?;
            Ok(())
        })
    }

    /// A new entry stamped now.
    pub fn new_cache_entry(pre_image: String) -> CacheEntry {
        let now = chrono::Utc::now().timestamp();
        CacheEntry {
            diff_id: None,
            layer_digest: None,
            layer_size: 0,
            pre_image,
            metadata: serde_json::Value::Null,
            created: now,
            last_used: now,
        }
    }

    /// Remember the pre-images of many build steps at once (what
    /// [`Store::set_step_preimage`] does for one), in one database session:
    /// a build records every step it knows at its end. Steps whose recorded
    /// pre-image is the same are not written; when none changed, nothing is.
    pub fn set_step_preimages(&self, steps: &[(String, Vec<u8>)]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let db = self.db()?;
        let changed: Vec<&(String, Vec<u8>)> = db.read(|txn| {
            let t = txn.open_table(STEPS)?;
            let mut changed = Vec::new();
            for entry in steps {
                if t.get(entry.0.as_str())?
                    .is_none_or(|v| v.value() != entry.1.as_slice())
                {
                    changed.push(entry);
                }
            }
            Ok(changed)
        })?;
        if changed.is_empty() {
            return Ok(());
        }
        db.write(|txn| {
            let mut t = txn.open_table(STEPS)?;
            for (step, preimage) in changed {
                t.insert(step.as_str(), preimage.as_slice())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_preimages_are_written_in_one_batch_and_only_when_changed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        store.set_step_preimage("Dockerfile|0|1", b"old").unwrap();
        store
            .set_step_preimages(&[
                ("Dockerfile|0|1".into(), b"new".to_vec()),
                ("Dockerfile|0|2".into(), b"two".to_vec()),
            ])
            .unwrap();
        assert_eq!(
            store.step_preimage("Dockerfile|0|1").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(
            store.step_preimage("Dockerfile|0|2").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        // Nothing changed: nothing is written (the database file is not
        // touched at all).
        let db = root.path().join("kiln.redb");
        let before = std::fs::read(&db).unwrap();
        store
            .set_step_preimages(&[("Dockerfile|0|2".into(), b"two".to_vec())])
            .unwrap();
        store.set_step_preimages(&[]).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), before);
        // And a reopened store reads what was written (the quick-repair
        // commits left a consistent file).
        drop(store);
        let again = Store::open(root.path()).unwrap();
        assert_eq!(
            again.step_preimage("Dockerfile|0|1").unwrap().as_deref(),
            Some(&b"new"[..])
        );
    }
}
