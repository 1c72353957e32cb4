//! The one error type of this crate.

use std::path::PathBuf;

use kiln_oci::{Digest, OciError};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("store database ({op}): {source}")]
    Db {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A blob is not in the store.
    #[error("blob {digest} is missing from the store{}", image.as_ref().map(|i| format!(" (needed by image {i})")).unwrap_or_default())]
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// The image that needs it, when known.
        image: Option<String>,
    },
    /// A blob whose content does not match its digest.
    #[error("corrupted blob {digest}{}: {reason}; remove the image and pull, load or build it again", image.as_ref().map(|i| format!(" of image {i}")).unwrap_or_default())]
    CorruptBlob {
        /// The blob.
        digest: Digest,
        /// The image it belongs to, when known.
        image: Option<String>,
        /// What the check found.
        reason: String,
    },
    /// No image matches what the user named.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// A short id that matches several images.
    #[error("ambiguous image id `{0}`: it matches several images; give more digits")]
    Ambiguous(String),
    /// `rmi` of an image that other names still use.
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories ({names})"
    )]
    Conflict {
        /// The image id (short).
        id: String,
        /// Its names.
        names: String,
    },
    /// `rmi` of an image's last name while a running container uses it.
    #[error(
        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {id}"
    )]
    ReferenceInUse {
        /// The name as given.
        reference: String,
        /// A container using the image (short id).
        container: String,
        /// The image id (short).
        id: String,
    },
    /// Deleting an image a running container uses.
    #[error(
        "conflict: unable to delete {id} (cannot be forced) - image is being used by running container {container}"
    )]
    ImageInUse {
        /// The image id (short).
        id: String,
        /// A container using the image (short id).
        container: String,
    },
    /// A container name that does not follow docker's rule.
    #[error("invalid container name `{0}`: only [a-zA-Z0-9][a-zA-Z0-9_.-]* are allowed")]
    InvalidName(String),
    /// `--name` of a running container.
    #[error(
        "the container name \"{name}\" is already in use by running container {id}; choose another name or wait for it to exit"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it (short id).
        id: String,
    },
    /// Stored metadata that cannot be read back.
    #[error("store metadata for {what} is unreadable: {reason}")]
    Metadata {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
    /// An image-format error (reference, digest, layer, archive).
    #[error(transparent)]
    Oci(#[from] OciError),
}

/// Short for `Result<T, StoreError>`.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
    pub(crate) fn db(op: &'static str, source: impl Into<redb::Error>) -> Self {
        Self::Db {
            op,
            source: Box::new(source.into()),
        }
    }
}
