#!/usr/bin/env bash
# Regenerates testdata/build/<case>/expected.json from real BuildKit: builds
# every case (or the cases named as arguments) with `docker build` and
# BuildKit, and writes the normalized snapshot of each result.
#
# Needs dockerd (Debian's docker.io package: dockerd 20.10 with its built-in
# BuildKit). CI never runs this: it compares kiln against the committed
# snapshots. Install it by hand when regenerating (`apt-get install docker.io`).
#
# If DOCKER_HOST is set, that daemon is used. Otherwise a private dockerd is
# started with its own data root in a temp dir (no bridge, no iptables, so
# builds run with `--network none`) and stopped by PID at the end.
#
# Syntax this BuildKit lacks (heredocs, --link, --parents, --exclude) or
# behaviour it has since changed (COPY --chmod with setuid bits): such a
# case has an `equivalent.Dockerfile` that spells the result current BuildKit
# documents (docs and source) with old syntax; that file is what gets built,
# and the snapshot's reference says so. A case whose expected.json says
# `"reference": "hand-written…"` is skipped.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
docker_bin="${DOCKER:-/usr/bin/docker}"
dockerd_bin="${DOCKERD:-/usr/sbin/dockerd}"
[ -x "$docker_bin" ] || { echo "regen: $docker_bin not found (apt-get install docker.io)" >&2; exit 1; }

work="$(mktemp -d /tmp/kiln-corpus-regen.XXXXXX)"
dockerd_pid=""
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    # dockerd leaves overlay mounts of its data root behind only on a crash.
    { grep -o " $work/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount "$m" 2>/dev/null || true; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${DOCKER_HOST:-}" ]; then
  [ -x "$dockerd_bin" ] || { echo "regen: $dockerd_bin not found (apt-get install docker.io)" >&2; exit 1; }
  mkdir -p "$work/dockerd/data" "$work/dockerd/exec"
  "$dockerd_bin" --bridge=none --iptables=false --ip-masq=false \
    --data-root "$work/dockerd/data" --exec-root "$work/dockerd/exec" \
    --pidfile "$work/dockerd/pid" -H "unix://$work/dockerd/sock" \
    >"$work/dockerd/log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/dockerd/sock"
  for _ in $(seq 1 300); do
    "$docker_bin" version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { cat "$work/dockerd/log" >&2; exit 1; }
    sleep 0.1
  done
fi
export DOCKER_BUILDKIT=1

cargo build -q --manifest-path "$repo/Cargo.toml" -p kiln-test-support --bin corpus-tool
tool="$repo/target/debug/corpus-tool"
server="$("$docker_bin" version --format '{{.Server.Version}}')"
reference="buildkit: docker build (dockerd $server, built-in BuildKit), $(date -u +%Y-%m-%d)"

"$tool" base-tar "$work/base.tar"
"$docker_bin" import "$work/base.tar" corpus/busybox:latest >/dev/null

if [ $# -gt 0 ]; then cases=("$@"); else mapfile -t cases < <("$tool" cases); fi
failed=()
for c in "${cases[@]}"; do
  dir="$here/$c"
  if grep -q '"reference": "hand-written' "$dir/expected.json" 2>/dev/null; then
    echo "regen: $c: hand-written, skipped"
    continue
  fi
  ctx="$work/ctx-$c"
  "$tool" prepare "$c" "$ctx"
  mapfile -t flags < <("$tool" flags "$c")
  log="$work/$c.log"
  if [ -f "$dir/base/Dockerfile" ]; then
    "$docker_bin" build --network none -q -t "corpus/$c-base:latest" -f "$dir/base/Dockerfile" "$ctx" >"$log" 2>&1 \
      || { echo "regen: $c: base build failed"; cat "$log"; failed+=("$c"); continue; }
  fi
  dockerfile="$dir/Dockerfile"
  ref="$reference"
  if [ -f "$dir/equivalent.Dockerfile" ]; then
    dockerfile="$dir/equivalent.Dockerfile"
    ref="$reference, of equivalent.Dockerfile (the result current BuildKit documents for Dockerfile)"
  fi
  if ! "$docker_bin" build --network none --progress plain -t "corpus-case/$c:latest" \
      -f "$dockerfile" "${flags[@]}" "$ctx" >"$log" 2>&1; then
    echo "regen: $c: build failed"; tail -20 "$log"; failed+=("$c"); continue
  fi
  "$docker_bin" save -o "$work/$c.tar" "corpus-case/$c:latest"
  "$tool" snapshot "$work/$c.tar" "$ref" >"$dir/expected.json.tmp"
  mv "$dir/expected.json.tmp" "$dir/expected.json"
  rm -f "$work/$c.tar"
  echo "regen: $c: ok"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "regen: failed: ${failed[*]}" >&2
  exit 1
fi
