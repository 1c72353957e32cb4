#!/usr/bin/env bash
# kiln's main job end to end on a fresh machine: build kiln, then use it on
# the examples (for now: read and check the Dockerfiles; building and running
# them comes with `kiln build`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p kiln-cli
kiln=$PWD/target/release/kiln
"$kiln" --version

for df in examples/hello/Dockerfile examples/multi-stage/Dockerfile; do
  echo "== kiln parse $df"
  "$kiln" parse "$df"
  echo "== kiln check -f $df"
  "$kiln" check -f "$df"
done

# The lint example has findings on purpose: show them, and show that
# `# check=error=true` makes them fail the check.
echo "== kiln check -f examples/lint/Dockerfile"
"$kiln" check -f examples/lint/Dockerfile
echo "== the same with # check=error=true (exit status 1 expected)"
if { echo '# check=error=true'; cat examples/lint/Dockerfile; } | "$kiln" check -f - --format json; then
  echo "demo: expected kiln check to fail with error=true" >&2
  exit 1
fi
echo "demo: ok"
