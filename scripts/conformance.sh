#!/usr/bin/env bash
# Runs the shared conformance suites (BuildKit's parser, lexer and
# .dockerignore data) against a debug build of kiln. The data is not part of
# this repository: it lives in ../shared/conformance beside the checkout
# (override with KILN_CONFORMANCE=DIR). Missing data is an error, unless
# KILN_SKIP_CONFORMANCE=1 says to skip it on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."

conf=${KILN_CONFORMANCE:-../shared/conformance}
if [ ! -d "$conf" ]; then
  if [ "${KILN_SKIP_CONFORMANCE:-}" = 1 ]; then
    echo "conformance: SKIPPED on request (KILN_SKIP_CONFORMANCE=1)"
    exit 0
  fi
  echo "conformance: $conf not found; set KILN_CONFORMANCE=DIR or KILN_SKIP_CONFORMANCE=1" >&2
  exit 1
fi

cargo build --locked -p kiln-cli
kiln=$PWD/target/debug/kiln
status=0
run_suite() {
  echo "== conformance: $*"
  "$@" || status=1
}
# Suites are added here as the commands they check land.
[ -x "$kiln" ] || { echo "conformance: $kiln was not built" >&2; exit 1; }

# Dockerfile parser (kiln parse --json): BuildKit's golden/negative/line
# files and the real-world corpus, plain and --strict (every field).
run_suite python3 "$conf/check-parse.py" "$kiln"
run_suite python3 "$conf/check-parse.py" "$kiln" --strict

# Shell lexer (kiln_dockerfile::shell): BuildKit's lexer tables, every case
# including the optional raw-quotes mode. The harness is built against this
# checkout, with kiln's own adapter (scripts/conformance/lexer-adapter.rs,
# which also drives the raw mode) in place of the harness's default one, in
# a target dir of its own under target/.
lexer_harness() {
  local work
  work=$(mktemp -d)
  cp -r "$conf/lexer-harness/src" "$work/"
  chmod -R u+w "$work"
  cp scripts/conformance/lexer-adapter.rs "$work/src/adapter.rs"
  sed -e "s#@KILN_CRATE@#$PWD/crates/dockerfile#" -e "s#@KILN_PACKAGE@#kiln-dockerfile#" \
    "$conf/lexer-harness/Cargo.toml.in" > "$work/Cargo.toml"
  local rc=0
  CARGO_TARGET_DIR="$PWD/target/lexer-harness" cargo run -q --release \
    --manifest-path "$work/Cargo.toml" -- "$conf/buildkit/shell/lexer-cases.json" --all \
    > "$work/out" || rc=$?
  cat "$work/out"
  # Every case runs: a skipped case is a failure here.
  if [ "$rc" = 0 ] && ! grep -qx '(0 skipped)' "$work/out"; then
    echo "lexer: some cases were skipped" >&2
    rc=1
  fi
  rm -rf "$work"
  return "$rc"
}
run_suite lexer_harness

# .dockerignore matching (kiln context why): Docker's patternmatcher tests
# and integration scenarios, 244 cases.
run_suite python3 "$conf/check-dockerignore.py" "$kiln"

exit $status
