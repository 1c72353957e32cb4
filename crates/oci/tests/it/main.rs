//! Integration tests of kiln-oci: one binary, one module per concern.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod layer;
mod malicious;
