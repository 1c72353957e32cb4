//! The boundary between the scheduler and whatever runs ops.
//!
//! ```text
//!   build ──(Graph<O>)──▶ Solver ──execute(op, inputs)──▶ Executor (solver::ops, or a fake)
//!                           │                                │
//!                           └──get/put(key)──▶ Cache ◀───────┘ (store's cache index)
//! ```
//!
//! The scheduler knows nothing about files, processes or images: an
//! [`Executor`] turns an op and its inputs' outputs into an output, and says
//! which content (context files, a base image digest) an op's key depends on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::graph::VertexId;
use crate::key::{CacheKey, Change, Key};

/// An op: something with a canonical cache key. What it does is up to its
/// [`Executor`].
pub trait Op: CacheKey + Send + Sync + 'static {
    /// A short kind name for progress and errors (`exec`, `file`, …).
    fn kind(&self) -> &'static str;

    /// Whether running the op is kiln's own work from start to end
    /// (hashing, copying, tar, compression): the scheduler then holds a CPU
    /// permit for its whole run (default). An op that mostly waits on
    /// something else — a RUN step's container process — returns `false`
    /// and takes [`OpContext::cpu_permit`] only around its own setup and
    /// teardown, so that waiting processes do not keep kiln's work from the
    /// cores (and the cores do not bound how many processes run).
    fn cpu_bound(&self) -> bool {
        true
    }
}

/// An error from an op, boxed so that executors keep their own error types
/// (the CLI downcasts them, e.g. to print a failed RUN's exit code).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an op did not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The op saw the build's cancellation and stopped (after cleaning up).
    #[error("cancelled")]
    Cancelled,
    /// The op failed.
    #[error(transparent)]
    Failed(BoxError),
}

impl OpError {
    /// Wrap any error.
    pub fn failed(err: impl Into<BoxError>) -> OpError {
        OpError::Failed(err.into())
    }
}

/// Content an op's key depends on beyond its definition: the checksums of
/// the context files it reads, the digest a base image reference resolved
/// to… Each field is part of the key and of its pre-image, so that a miss
/// can name the file that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentKey {
    /// `(name, value)` pairs, e.g. `("file:src/main.rs", "sha256:…")`.
    pub fields: Vec<(String, String)>,
}

/// Runs ops of type `Self::Op`.
pub trait Executor: Send + Sync + 'static {
    /// The op type.
    type Op: Op;
    /// What an op produces (a snapshot reference, a value in tests…).
    type Output: Clone + Send + Sync + 'static;

    /// The content `op`'s key depends on, if any (default: none). Called for
    /// every vertex needed by a solve before anything runs; heavy work
    /// belongs on rayon ([`OpContext::cpu`]).
    fn content_key(
        &self,
        op: &Self::Op,
        ctx: &OpContext,
    ) -> impl Future<Output = Result<Option<ContentKey>, OpError>> + Send {
        let _ = (op, ctx);
        async { Ok(None) }
    }

    /// Run `op` on its inputs' outputs. Must watch
    /// [`OpContext::cancelled`] and, when it fires, undo what it started
    /// (kill processes, unmount, remove temp files) and return
    /// [`OpError::Cancelled`].
    fn execute(
        &self,
        op: &Self::Op,
        inputs: Vec<Self::Output>,
        ctx: OpContext,
    ) -> impl Future<Output = Result<Self::Output, OpError>> + Send;
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A message from kiln itself about the step.
    Info,
}

/// What happened during a solve, in order per vertex. Libraries never
/// print: the CLI renders these.
#[derive(Debug, Clone)]
pub enum Event {
    /// The vertex's key was found in the cache; it will not run.
    Cached {
        /// The vertex.
        vertex: VertexId,
        /// Its display name.
        name: String,
        /// Its key.
        key: Key,
    },
    /// The vertex's key missed the cache; what changed since the last build
    /// of the same step (empty: no earlier build is known, or the cache was
    /// bypassed). Only sent with [`crate::SolveOptions::explain`].
    Missed {
        /// The vertex.
        vertex: VertexId,
        /// Its display name.
        name: String,
        /// The changed pre-image fields (empty: nothing to compare with).
        changes: Vec<Change>,
        /// Whether an earlier pre-image existed.
        known: bool,
    },
    /// The vertex started running.
    Started {
        /// The vertex.
        vertex: VertexId,
        /// Its display name.
        name: String,
    },
    /// A line (or chunk) of output from a running vertex.
    Log {
        /// The vertex.
        vertex: VertexId,
        /// Which stream.
        stream: Stream,
        /// The bytes, complete (never clipped).
        data: Arc<[u8]>,
    },
    /// The vertex finished successfully.
    Finished {
        /// The vertex.
        vertex: VertexId,
        /// How long it ran.
        elapsed: Duration,
    },
    /// The vertex failed; the solve stops.
    Failed {
        /// The vertex.
        vertex: VertexId,
        /// How long it ran.
        elapsed: Duration,
        /// The error's message.
        message: String,
    },
    /// The vertex was running when the solve was cancelled, and stopped.
    Cancelled {
        /// The vertex.
        vertex: VertexId,
    },
}

/// Where events go.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// An event sink that drops everything.
pub fn discard_events() -> EventSink {
    Arc::new(|_| {})
}

/// What an executing op gets from the scheduler.
#[derive(Clone)]
pub struct OpContext {
    pub(crate) vertex: VertexId,
    pub(crate) name: Arc<str>,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: EventSink,
    pub(crate) key: Option<Key>,
    /// The solve's CPU permits ([`crate::SolveOptions::cpu`]).
    pub(crate) cpu: Arc<Semaphore>,
}

/// A permit to do kiln's own CPU work, from [`OpContext::cpu_permit`];
/// dropping it hands the core to the next op.
#[derive(Debug)]
pub struct CpuPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl std::fmt::Debug for OpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpContext")
            .field("vertex", &self.vertex)
            .field("name", &self.name)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl OpContext {
    /// A context outside any solve (for calling an executor directly, e.g.
    /// in tests): never cancelled unless `cancel` is, events dropped.
    pub fn detached(name: &str, cancel: CancellationToken) -> OpContext {
        OpContext {
            vertex: VertexId(petgraph::graph::NodeIndex::new(0)),
            name: name.into(),
            cancel,
            events: discard_events(),
            key: None,
            cpu: Arc::new(Semaphore::new(crate::solve::default_jobs())),
        }
    }

    /// The vertex being run.
    pub fn vertex(&self) -> VertexId {
        self.vertex
    }

    /// Its display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its cache key (`None` while computing content keys).
    pub fn key(&self) -> Option<Key> {
        self.key
    }

    /// Whether the solve was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the solve is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The cancellation token itself (to hand to child tasks).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Report output of the running op.
    pub fn log(&self, stream: Stream, data: impl Into<Arc<[u8]>>) {
        (self.events)(Event::Log {
            vertex: self.vertex,
            stream,
            data: data.into(),
        });
    }

    /// Wait for a permit to do kiln's own CPU work (one of
    /// [`crate::SolveOptions::cpu`]). Only ops that are not
    /// [`Op::cpu_bound`] take one, around their setup and teardown; never
    /// take a second while holding one. Cancellation while waiting is
    /// [`OpError::Cancelled`].
    pub async fn cpu_permit(&self) -> Result<CpuPermit, OpError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(OpError::Cancelled),
            p = Arc::clone(&self.cpu).acquire_owned() => p
                .map(CpuPermit)
                .map_err(|_| OpError::failed("internal error: the CPU permits were closed")),
        }
    }

    /// Run CPU-heavy work (hashing, tar, compression) on the rayon pool and
    /// wait for it without blocking a tokio worker.
    pub async fn cpu<R, F>(&self, f: F) -> Result<R, OpError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        cpu(f).await
    }
}

/// Run `f` on the rayon pool; resolves with its result. A panic in `f` is an
/// [`OpError::Failed`].
pub async fn cpu<R, F>(f: F) -> Result<R, OpError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_panic)) => Err(OpError::failed("a worker thread panicked")),
        Err(_) => Err(OpError::failed("a worker thread went away")),
    }
}
