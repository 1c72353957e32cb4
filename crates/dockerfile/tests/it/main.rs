//! Integration tests of kiln-dockerfile: golden fixtures, error fixtures,
//! lexer line tables and properties.

// Test helpers outside #[test] fns may unwrap: a broken fixture should panic.
#![allow(clippy::unwrap_used, clippy::format_push_string)]

mod checks;
mod errors;
mod fixtures;
mod golden;
mod props;
mod typed;
