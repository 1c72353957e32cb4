//! Integration tests of kiln-context.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns
mod cache;
mod git;
mod ignore_table;
mod local;
mod statcache;
mod stdin;
mod url;
mod walk_props;
