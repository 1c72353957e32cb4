//! Integration tests of kiln-build.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod convert;
