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
exit $status
