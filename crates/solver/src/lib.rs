//! kiln's solver: a generic graph of ops, their cache keys, and a scheduler
//! that runs the ops whose keys miss the cache, in parallel.
//!
//! It is for: turning a [`Graph`] of ops into outputs, running every op
//! whose inputs are ready at once (kiln's own CPU work bounded by the cores,
//! the number of steps in progress by `jobs` when given), running identical ops
//! once, skipping ops whose key is cached, cancelling everything cleanly on
//! the first failure, and explaining why a step missed the cache.
//!
//! It is not for: Dockerfile syntax (the `build` crate turns instructions
//! into [`ops::KilnOp`]s), or touching files and processes itself (an
//! [`Executor`] does that; the scheduler never imports the store or the
//! runtime).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use kiln_solver::{
//!     CacheKey, Executor, Graph, KeyEncoder, MemoryCache, Op, OpContext, OpError, Solver,
//!     VertexOptions,
//! };
//!
//! /// Adds a constant to the sum of its inputs.
//! struct Add(u64);
//! impl CacheKey for Add {
//!     fn encode_key(&self, enc: &mut KeyEncoder) {
//!         enc.tag("add", 1);
//!         enc.u64("n", self.0);
//!     }
//! }
//! impl Op for Add {
//!     fn kind(&self) -> &'static str { "add" }
//! }
//!
//! struct Calculator;
//! impl Executor for Calculator {
//!     type Op = Add;
//!     type Output = u64;
//!     async fn execute(&self, op: &Add, inputs: Vec<u64>, _: OpContext) -> Result<u64, OpError> {
//!         Ok(op.0 + inputs.iter().sum::<u64>())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut graph = Graph::new();
//! let a = graph.add(Add(1), &[], VertexOptions::named("a"));
//! let b = graph.add(Add(2), &[], VertexOptions::named("b"));
//! let c = graph.add(Add(10), &[a, b], VertexOptions::named("c"));
//!
//! let cache = Arc::new(MemoryCache::new());
//! let solver = Solver::new(Arc::new(Calculator), cache.clone());
//! let first = solver.solve(&graph, &[c]).await.unwrap();
//! assert_eq!(first.output(c), Some(&13));
//! assert_eq!(first.executed, 3);
//!
//! // Nothing changed: the target's key is cached and nothing runs.
//! let again = solver.solve(&graph, &[c]).await.unwrap();
//! assert_eq!((again.executed, again.cached), (0, 1));
//! # });
//! ```

#![deny(missing_docs)]

mod cache;
mod error;
mod graph;
mod key;
mod op;
pub mod ops;
mod solve;

pub use cache::{Cache, MemoryCache, NoCache};
pub use error::SolveError;
pub use graph::{Graph, Vertex, VertexId, VertexOptions};
pub use key::{CacheKey, Change, Field, Key, KeyEncoder, ParseKeyError, PreImage};
pub use op::{
    BoxError, ContentKey, CpuPermit, Event, EventSink, Executor, Op, OpContext, OpError, Stream,
    cpu, discard_events,
};
pub use solve::{Solution, SolveOptions, Solver, default_jobs};
pub use tokio_util::sync::CancellationToken;
