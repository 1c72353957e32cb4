//! The crate's one error type.

use std::path::PathBuf;

use crate::ignore::PatternError;

/// Everything that can go wrong opening a context or reading from it.
/// Each variant names the source, file or path it is about.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory does not exist or is not a directory.
    #[error("build context `{path}` is not a directory")]
    NotADirectory {
        /// As given.
        path: PathBuf,
    },
    /// No Dockerfile where it was looked for.
    #[error("cannot find the Dockerfile: `{path}` does not exist")]
    NoDockerfile {
        /// Where it was expected.
        path: PathBuf,
    },
    /// The Dockerfile is a directory or something else that isn't a file.
    #[error("the Dockerfile `{path}` is not a regular file")]
    DockerfileNotAFile {
        /// Its path.
        path: PathBuf,
    },
    /// An ignore file has a rule docker would reject.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A source path leaves the context (`../x`, or a symlink pointing out).
    #[error("`{path}` is outside the build context{}", via.as_ref().map(|v| format!(" (through the symlink `{}`)", v.display())).unwrap_or_default())]
    Escape {
        /// The source path as written.
        path: String,
        /// The symlink (relative to the context root) that led out, if any.
        via: Option<PathBuf>,
    },
    /// A source path names nothing in the context (or only excluded files).
    #[error("`{path}` not found in the build context{}", if *excluded { " (it is excluded by .dockerignore)" } else { "" })]
    NotFound {
        /// The source path as written.
        path: String,
        /// Whether it exists but `.dockerignore` excludes it.
        excluded: bool,
    },
    /// Too many symlinks while resolving a path (a loop).
    #[error("too many levels of symbolic links resolving `{path}` in the build context")]
    SymlinkLoop {
        /// The source path as written.
        path: String,
    },
    /// A source pattern is not a valid glob.
    #[error("invalid source pattern `{pattern}`: {reason}")]
    BadSource {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A file in the context can't be part of an image (a socket, a fifo, a device).
    #[error("`{path}` in the build context is a {kind}, which cannot be copied")]
    Unsupported {
        /// Relative to the context root.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A context archive (stdin or a tarball URL) is unusable.
    #[error("context archive from {origin}: {reason}")]
    Archive {
        /// `stdin` or the URL.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A git source could not be fetched or checked out.
    #[error("git context `{url}`: {reason}")]
    Git {
        /// The repository URL (without the fragment).
        url: String,
        /// What went wrong, with git's own message when it has one.
        reason: String,
    },
    /// A URL could not be downloaded.
    #[error("downloading `{url}`: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong (HTTP status, TLS, timeout, size limit).
        reason: String,
    },
    /// The `#ref:subdir` part names a directory the source does not have.
    #[error("{origin}: subdirectory `{subdir}` {reason}")]
    Subdir {
        /// The source.
        origin: String,
        /// The subdirectory as given.
        subdir: String,
        /// `does not exist`, `is not a directory`, `is outside the context`.
        reason: &'static str,
    },
    /// The stat cache file is unreadable or damaged.
    #[error("stat cache `{path}`: {reason}")]
    StatCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error, with the path in its message (fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = ContextError> = std::result::Result<T, E>;
