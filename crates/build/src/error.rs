//! The build crate's one error type.

use kiln_dockerfile::Location;
use kiln_solver::{BoxError, SolveError, VertexId};

/// Where a step is in the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepLocation {
    /// The first line's location (line, column, width, span).
    pub location: Location,
    /// The last line of the instruction (continuations, heredocs).
    pub end_line: usize,
}

/// A RUN step whose process failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("process \"{command}\" did not complete successfully: exit code: {exit_code}")]
pub struct ExecFailed {
    /// The command as run (argv joined with spaces).
    pub command: String,
    /// Its exit status (128 + signal when killed).
    pub exit_code: i32,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse or type-check.
    #[error(transparent)]
    Dockerfile(#[from] kiln_dockerfile::Error),
    /// An instruction cannot be built (an unknown stage, a missing base
    /// image, something kiln does not support); located at its line.
    #[error("{message}")]
    At {
        /// What is wrong.
        message: String,
        /// Where.
        location: Location,
        /// How to fix it.
        help: Option<String>,
    },
    /// A step failed while running; the rest of the build was cancelled.
    #[error("{name}: {source}")]
    Step {
        /// The failed vertex (for its output in the progress log).
        vertex: VertexId,
        /// Its display name.
        name: String,
        /// Its Dockerfile location, when it comes from one instruction.
        location: Option<StepLocation>,
        /// The RUN's exit status, when a process failed.
        exit_code: Option<i32>,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The build was cancelled (Ctrl-C).
    #[error("build cancelled")]
    Cancelled,
    /// The solver failed outside any one step (the cache index).
    #[error(transparent)]
    Solve(SolveError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    /// An image-format error.
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
    /// A request that makes no sense (a bad `--output`, an unknown target…).
    #[error("{message}")]
    Request {
        /// What is wrong.
        message: String,
        /// How to fix it.
        help: Option<String>,
    },
    /// Writing an output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// A request error with an optional hint.
    pub fn request(message: impl Into<String>, help: Option<&str>) -> BuildError {
        BuildError::Request {
            message: message.into(),
            help: help.map(str::to_owned),
        }
    }

    /// The Dockerfile location of the problem, if there is one.
    pub fn location(&self) -> Option<Location> {
        match self {
            BuildError::Dockerfile(e) => Some(e.location()),
            BuildError::At { location, .. } => Some(*location),
            BuildError::Step { location, .. } => location.map(|l| l.location),
            _ => None,
        }
    }

    /// How to fix it, when known.
    pub fn help(&self) -> Option<&str> {
        match self {
            BuildError::Dockerfile(e) => e.help(),
            BuildError::At { help, .. } | BuildError::Request { help, .. } => help.as_deref(),
            _ => None,
        }
    }
}
