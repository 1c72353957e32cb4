//! The cache the scheduler consults: key → output, and step → last
//! pre-image (for `--explain`). The store's cache index implements it for
//! real builds; [`MemoryCache`] is for tests and one-shot solves.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::key::{Key, PreImage};
use crate::op::BoxError;

/// A cache of op outputs by key.
pub trait Cache<T>: Send + Sync {
    /// The output recorded under `key`, if it is still usable (an
    /// implementation returns `None` when, say, the snapshot was collected).
    fn get(&self, key: &Key) -> Result<Option<T>, BoxError>;

    /// Record `value` under `key`, with the key's pre-image.
    fn put(&self, key: &Key, preimage: &PreImage, value: &T) -> Result<(), BoxError>;

    /// The pre-image `step` had in the last build that recorded it.
    fn previous(&self, step: &str) -> Result<Option<PreImage>, BoxError>;

    /// Remember `step`'s pre-image for the next build's `--explain`.
    fn remember(&self, step: &str, preimage: &PreImage) -> Result<(), BoxError>;

    /// Remember many steps' pre-images (a solve does this once, at its
    /// end). The default calls [`Cache::remember`] for each; a persistent
    /// cache writes them in one transaction.
    fn remember_all(&self, steps: &[(&str, &PreImage)]) -> Result<(), BoxError> {
        for (step, preimage) in steps {
            self.remember(step, preimage)?;
        }
        Ok(())
    }
}

/// An in-memory [`Cache`].
#[derive(Debug)]
pub struct MemoryCache<T> {
    entries: Mutex<HashMap<Key, T>>,
    steps: Mutex<HashMap<String, PreImage>>,
}

impl<T> Default for MemoryCache<T> {
    fn default() -> Self {
        MemoryCache {
            entries: Mutex::new(HashMap::new()),
            steps: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> MemoryCache<T> {
    /// An empty cache.
    pub fn new() -> MemoryCache<T> {
        MemoryCache::default()
    }

    /// How many outputs are recorded.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget one output (as if its snapshot had been collected).
    pub fn evict(&self, key: &Key) {
        if let Ok(mut e) = self.entries.lock() {
            e.remove(key);
        }
    }
}

fn poisoned() -> BoxError {
    "memory cache lock poisoned".into()
}

impl<T: Clone + Send> Cache<T> for MemoryCache<T> {
    fn get(&self, key: &Key) -> Result<Option<T>, BoxError> {
        Ok(self
            .entries
            .lock()
            .map_err(|_| poisoned())?
            .get(key)
            .cloned())
    }

    fn put(&self, key: &Key, _preimage: &PreImage, value: &T) -> Result<(), BoxError> {
        self.entries
            .lock()
            .map_err(|_| poisoned())?
            .insert(*key, value.clone());
        Ok(())
    }

    fn previous(&self, step: &str) -> Result<Option<PreImage>, BoxError> {
        Ok(self
            .steps
            .lock()
            .map_err(|_| poisoned())?
            .get(step)
            .cloned())
    }

    fn remember(&self, step: &str, preimage: &PreImage) -> Result<(), BoxError> {
        self.steps
            .lock()
            .map_err(|_| poisoned())?
            .insert(step.to_owned(), preimage.clone());
        Ok(())
    }
}

/// A cache that never hits and records nothing (`--no-cache` without
/// keeping results).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

impl<T> Cache<T> for NoCache {
    fn get(&self, _key: &Key) -> Result<Option<T>, BoxError> {
        Ok(None)
    }

    fn put(&self, _key: &Key, _preimage: &PreImage, _value: &T) -> Result<(), BoxError> {
        Ok(())
    }

    fn previous(&self, _step: &str) -> Result<Option<PreImage>, BoxError> {
        Ok(None)
    }

    fn remember(&self, _step: &str, _preimage: &PreImage) -> Result<(), BoxError> {
        Ok(())
    }
}
