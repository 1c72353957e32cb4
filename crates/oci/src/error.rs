//! The one error type of this crate.

use std::path::PathBuf;

use crate::Digest;

/// Everything that can go wrong in `kiln-oci`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// An image reference that docker would reject too.
    #[error("invalid reference format: {reason}: `{input}`")]
    Reference {
        /// The text as given.
        input: String,
        /// What is wrong, in docker's words where docker has them.
        reason: String,
    },
    /// A digest string that is not `algorithm:hex`.
    #[error("invalid digest `{input}`: {reason}")]
    Digest {
        /// The text as given.
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Content whose hash differs from the digest it was announced with.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// What it really hashes to.
        actual: Digest,
    },
    /// Content whose size differs from the size it was announced with.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Announced size.
        expected: u64,
        /// Real size.
        actual: u64,
    },
    /// A tar entry that would land outside the target directory, or is
    /// otherwise refused.
    #[error("unsafe layer entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A malformed tar stream.
    #[error("malformed tar archive{}: {source}", entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default())]
    Tar {
        /// The entry being read, when known.
        entry: Option<String>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file-system operation failed.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`create`, `read`, `mknod`, …).
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a stream (no path involved).
    #[error("{context}: {source}")]
    Stream {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image archive (docker-archive or OCI archive) that cannot be read.
    #[error("invalid image archive: {reason}")]
    Archive {
        /// What is wrong.
        reason: String,
    },
    /// JSON that does not match the OCI/docker schema.
    #[error("invalid {what}: {source}")]
    Json {
        /// `image config`, `manifest`, …
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A Dockerfile-style `--change` instruction that `import` cannot apply.
    #[error("invalid change `{input}`: {reason}")]
    Change {
        /// The instruction as given.
        input: String,
        /// What is wrong.
        reason: String,
    },
}

/// Short for `Result<T, OciError>`.
pub type Result<T, E = OciError> = std::result::Result<T, E>;

impl OciError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
