//! The solver's one error type.

use crate::graph::VertexId;
use crate::op::BoxError;

/// Why a solve failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// An op failed; the rest of the solve was cancelled.
    #[error("{name}: {source}")]
    Op {
        /// The failed vertex.
        vertex: VertexId,
        /// Its display name.
        name: String,
        /// The executor's error (downcast it for details).
        #[source]
        source: BoxError,
    },
    /// Computing the content an op's key depends on failed.
    #[error("{name}: computing its cache key: {source}")]
    ContentKey {
        /// The vertex.
        vertex: VertexId,
        /// Its display name.
        name: String,
        /// The executor's error.
        #[source]
        source: BoxError,
    },
    /// The cache could not be read or written.
    #[error("build cache: {source}")]
    Cache {
        /// The cache's error.
        #[source]
        source: BoxError,
    },
    /// The solve was cancelled from outside (Ctrl-C).
    #[error("build cancelled")]
    Cancelled,
    /// A target is not a vertex of the graph.
    #[error("vertex {vertex} is not in the graph")]
    UnknownVertex {
        /// The bad id.
        vertex: VertexId,
    },
}

impl SolveError {
    /// The vertex the error is about, if any.
    pub fn vertex(&self) -> Option<VertexId> {
        match self {
            SolveError::Op { vertex, .. }
            | SolveError::ContentKey { vertex, .. }
            | SolveError::UnknownVertex { vertex } => Some(*vertex),
            SolveError::Cache { .. } | SolveError::Cancelled => None,
        }
    }
}
