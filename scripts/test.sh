#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs every test dependency,
# checks formatting and lints, runs every crate's tests (the ones that need
# root, namespaces or system tools included: they fail, never skip, when
# something is missing), then the conformance suites against a built kiln.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked

scripts/conformance.sh
