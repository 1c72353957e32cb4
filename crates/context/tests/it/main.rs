//! Integration tests of kiln-context.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns
mod ignore_table;
mod local;
