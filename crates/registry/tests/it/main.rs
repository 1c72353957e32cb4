//! Integration tests of kiln-registry: against a real `docker-registry` on
//! 127.0.0.1 (Debian package, see scripts/install-test-deps.sh) and, for
//! what a real registry cannot show (token endpoint, 503s, schema 1), a tiny
//! fake server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;
mod real;
mod support;
mod token;
