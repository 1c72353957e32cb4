//! Integration tests of the runtime: real containers, so they need root
//! (named `*_needs_root`; they fail, never skip, without it).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod step;
mod support;
mod trash;
