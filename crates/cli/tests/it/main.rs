//! Integration tests of the `kiln` binary: one test binary, one module per
//! command.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod build;
mod check;
mod completions;
mod context;
mod corpus;
mod images;
mod import;
mod parse;
mod registry;
mod remote_context;
mod run;
mod save;
mod support;
