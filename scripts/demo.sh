#!/usr/bin/env bash
# kiln's main job end to end on a fresh machine (as root: builds run each
# RUN step in a container): build kiln, make a base image locally (no public
# registry is reachable: `kiln import` of a busybox-static root filesystem),
# build the examples from a directory, from stdin and from a local git URL
# (a throwaway repository of examples/ served by `git daemon` on 127.0.0.1),
# and run the results.
set -euo pipefail
cd "$(dirname "$0")/.."

# busybox-static (the base image), git (the git URL context), python3.
scripts/install-test-deps.sh
cargo build --release --locked -p kiln-cli
kiln=$PWD/target/release/kiln
"$kiln" --version

# A private store for the demo (KILN_ROOT=… to use another one).
export KILN_ROOT=${KILN_ROOT:-$PWD/target/demo-root}
work=$(mktemp -d)
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

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
echo "== a gzip tar on stdin (the context with its Dockerfile)"
tar -C examples/multi-stage -cz . | "$kiln" build --progress plain -t multi-stage-tar -
"$kiln" history multi-stage

echo "== a local git URL: examples/ as a repository served by git daemon on 127.0.0.1"
cp -r examples "$work/examples"
git -C "$work/examples" init -q -b main
git -C "$work/examples" add -A
git -C "$work/examples" -c user.name=kiln-demo -c user.email=demo@example.invalid \
  commit -q -m "kiln examples"
mkdir "$work/srv"
git clone -q --bare "$work/examples" "$work/srv/examples.git"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# git-daemon itself (not `git daemon`, whose child would outlive a kill).
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 \
  --port="$port" --base-path="$work/srv" "$work/srv" 2>"$work/git-daemon.log" &
daemon_pid=$!
url="git://127.0.0.1:$port/examples.git"
for _ in $(seq 100); do
  git ls-remote "$url" >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/git-daemon.log" >&2; exit 1; }
  sleep 0.1
done
"$kiln" build --progress plain -t multi-stage-git "$url#main:multi-stage"
"$kiln" context ls "$url#main:hello"

echo "== run the results"
"$kiln" run --rm hello
"$kiln" run --rm multi-stage
"$kiln" run --rm multi-stage demo
"$kiln" run --rm hello-stdin
"$kiln" run --rm multi-stage-tar tar
"$kiln" run --rm multi-stage-git git

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
