//! Progress of pulls and pushes, as events for the CLI to render.

use std::sync::Arc;

use kiln_oci::Digest;

/// Receives [`Event`]s; called from any task, so it must be cheap and
/// thread-safe.
pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

/// A progress sink that ignores everything.
pub fn no_progress() -> Progress {
    Arc::new(|_| {})
}

/// What a pull or push is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The manifest of the image was found (after platform selection).
    Resolved {
        /// The reference as asked.
        reference: String,
        /// The image manifest's digest.
        digest: Digest,
        /// The platform chosen from an index, if the reference named one.
        platform: Option<String>,
    },
    /// A blob transfer starts.
    BlobStart {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob moved.
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Total bytes.
        total: u64,
    },
    /// A blob is complete (and verified, for downloads).
    BlobDone {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob needed no transfer: already in the store (pull) or in the
    /// registry (push).
    BlobExists {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob was mounted from another repository of the registry.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// A request failed and is tried again.
    Retry {
        /// What was being done.
        what: String,
        /// Attempt that failed (1-based).
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// The manifest was pushed.
    ManifestPushed {
        /// Where.
        reference: String,
        /// Its digest.
        digest: Digest,
    },
}
