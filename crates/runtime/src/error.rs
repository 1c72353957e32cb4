//! The runtime's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while preparing, running or cleaning up a
/// container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file or directory operation failed (the path is in the message).
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// An OS call failed.
    #[error("{call} {}: {errno}", target.display())]
    Sys {
        /// The call, e.g. `mount overlay`.
        call: &'static str,
        /// What it acted on.
        target: PathBuf,
        /// The error the kernel returned.
        errno: nix::errno::Errno,
    },

    /// The helper's spec file could not be read or written.
    #[error("container spec {}: {source}", path.display())]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },

    /// A user given as `-u`/`USER` does not exist in the image.
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser {
        /// The name as given.
        user: String,
    },

    /// A group given as `user:group` does not exist in the image.
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup {
        /// The name as given.
        group: String,
    },

    /// A capability name that is not known.
    #[error("unknown capability `{name}`; names look like `NET_ADMIN` or `CAP_NET_ADMIN`")]
    UnknownCapability {
        /// The name as given.
        name: String,
    },

    /// A mount target is not an absolute path inside the container.
    #[error("invalid mount target `{target}`: must be an absolute path other than `/`")]
    BadMountTarget {
        /// The target as given.
        target: String,
    },

    /// The runtime helper process failed before the container's command ran.
    #[error("{message}")]
    Setup {
        /// What the helper reported.
        message: String,
    },

    /// The helper died without reporting a result.
    #[error("the runtime helper died without a result ({status})")]
    HelperDied {
        /// Its wait status.
        status: String,
    },

    /// The run was cancelled; the container's processes were killed.
    #[error("the run was cancelled")]
    Cancelled,
}

impl RuntimeError {
    /// Wrap an errno from `call` on `target`.
    pub(crate) fn sys(
        call: &'static str,
        target: impl Into<PathBuf>,
    ) -> impl FnOnce(nix::errno::Errno) -> Self {
        let target = target.into();
        move |errno| RuntimeError::Sys {
            call,
            target,
            errno,
        }
    }
}

/// The runtime's result type.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
