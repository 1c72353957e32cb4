#!/usr/bin/env bash
# kiln's main job end to end on a fresh machine (as root: builds run each
# RUN step in a container): build kiln, make a base image locally (no public
# registry is reachable: `kiln import` of a busybox-static root filesystem),
# build the examples from a directory and from stdin, and run the results.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p kiln-cli
kiln=$PWD/target/release/kiln
"$kiln" --version

# A private store for the demo (KILN_ROOT=… to use another one).
export KILN_ROOT=${KILN_ROOT:-$PWD/target/demo-root}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== a busybox base image, made locally"
bash scripts/busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$kiln" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox
"$kiln" images

echo "== kiln build examples/hello (a directory context)"
"$kiln" build --progress plain -t hello examples/hello
echo "== kiln build examples/multi-stage"
"$kiln" build --progress plain -t multi-stage examples/multi-stage
echo "== the same again: every step comes from the cache"
"$kiln" build --progress plain -t multi-stage examples/multi-stage
echo "== a Dockerfile on stdin (empty context)"
"$kiln" build --progress plain -t hello-stdin - < examples/hello/Dockerfile
"$kiln" history multi-stage

echo "== run the results"
"$kiln" run --rm hello
"$kiln" run --rm multi-stage
"$kiln" run --rm multi-stage demo
"$kiln" run --rm hello-stdin

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
