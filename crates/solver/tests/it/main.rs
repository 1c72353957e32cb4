//! Integration tests of the solver, with fake deterministic ops.
// Helpers outside #[test] fns unwrap too: a test failing loudly is the point.
#![allow(clippy::unwrap_used)]

mod copy;
mod fake;
mod properties;
mod scheduler;
