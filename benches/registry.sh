#!/usr/bin/env bash
# Pull and push throughput of kiln against a local docker-registry on
# 127.0.0.1, next to `skopeo copy` of the same image on the same machine.
#
# The image: LAYERS layers of LAYER_MB MB of random data each (default
# 10 × 100 MB; incompressible, so the gzip layers are as big). It is built
# with `kiln build` (FROM scratch + one COPY per layer) and pushed once to
# warm the store's compressed-layer cache, so the timed runs move the same
# gzip bytes for both tools:
#   kiln push   store → fresh registry        skopeo copy dir: → fresh registry
#   kiln pull   registry → fresh store         skopeo copy docker:// → dir:
# Reports seconds and MB/s (MB = 10^6 bytes of compressed layers). Work
# files go to WORK (default: a temp dir under /tmp; say which file system
# when reporting numbers).
#
# Usage: benches/registry.sh            (needs docker-registry and skopeo:
#        LAYERS=3 LAYER_MB=20 benches/registry.sh     scripts/install-test-deps.sh)
set -euo pipefail

LAYERS=${LAYERS:-10}
LAYER_MB=${LAYER_MB:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN:-$here/target/release/kiln}
if [ ! -x "$KILN" ]; then
  echo "building kiln (release)…" >&2
  (cd "$here" && cargo build --release -q -p kiln-cli)
fi
for tool in docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || { echo "registry.sh: $tool is missing (scripts/install-test-deps.sh)" >&2; exit 1; }
done

WORK=${WORK:-$(mktemp -d /tmp/kiln-bench-registry.XXXXXX)}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Start a registry with its own storage; sets $host to its host:port (no
# command substitution: the PID must be recorded in this shell for cleanup).
start_registry() {
  local name=$1 port
  port=$(free_port)
  mkdir -p "$WORK/$name/storage"
  cat >"$WORK/$name/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/$name/storage
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$WORK/$name/config.yml" >"$WORK/$name/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then host="127.0.0.1:$port"; return; fi
    sleep 0.05
  done
  echo "registry $name did not start: $(cat "$WORK/$name/log")" >&2
  exit 1
}

now() { date +%s.%N; }
rate() { python3 -c "import sys; b,s=float(sys.argv[1]),float(sys.argv[2]); print(f'{s:8.2f} s {b/1e6/s:9.1f} MB/s')" "$1" "$2"; }

export DOCKER_CONFIG=$WORK/docker-config
start_registry src; src=$host
start_registry dst-kiln; dst_kiln=$host
start_registry dst-skopeo; dst_skopeo=$host

echo "making the image: $LAYERS × $LAYER_MB MB random layers in $WORK ($(df -T "$WORK" | awk 'NR==2{print $2}'))" >&2
mkdir -p "$WORK/ctx"
{
  echo "FROM scratch"
  for i in $(seq "$LAYERS"); do
    head -c "$((LAYER_MB * 1000 * 1000))" /dev/urandom >"$WORK/ctx/layer$i"
    echo "COPY layer$i /layer$i"
  done
} >"$WORK/ctx/Dockerfile"
root=$WORK/root
"$KILN" --root "$root" build -q --progress plain -t "$src/bench/image:1" "$WORK/ctx" >/dev/null
rm -rf "$WORK/ctx"
# Warm-up push: compresses each layer once (cached in the store).
"$KILN" --root "$root" push -q "$src/bench/image:1" >/dev/null
bytes=$(skopeo inspect --raw --tls-verify=false "docker://$src/bench/image:1" |
  python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]))')
echo "image: $((bytes / 1000000)) MB of gzip layers" >&2

# kiln push to a fresh registry (compression cached: pure upload).
"$KILN" --root "$root" tag "$src/bench/image:1" "$dst_kiln/bench/image:1"
t0=$(now); "$KILN" --root "$root" push -q "$dst_kiln/bench/image:1" >/dev/null; t1=$(now)
kiln_push=$(python3 -c "print($t1-$t0)")

# kiln pull into a fresh store.
t0=$(now); "$KILN" --root "$WORK/root2" pull -q "$src/bench/image:1" >/dev/null; t1=$(now)
kiln_pull=$(python3 -c "print($t1-$t0)")
rm -rf "$WORK/root2"

# skopeo pull (registry → dir:) and push (dir: → fresh registry).
t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$src/bench/image:1" "dir:$WORK/sk" >/dev/null; t1=$(now)
sk_pull=$(python3 -c "print($t1-$t0)")
t0=$(now); skopeo copy -q --dest-tls-verify=false "dir:$WORK/sk" "docker://$dst_skopeo/bench/image:1" >/dev/null; t1=$(now)
sk_push=$(python3 -c "print($t1-$t0)")

echo
echo "registry throughput, $LAYERS × $LAYER_MB MB layers ($((bytes / 1000000)) MB), loopback, WORK on $(df -T "$WORK" | awk 'NR==2{print $2}')"
printf '%-14s %s\n' "kiln pull" "$(rate "$bytes" "$kiln_pull")"
printf '%-14s %s\n' "skopeo pull" "$(rate "$bytes" "$sk_pull")"
printf '%-14s %s\n' "kiln push" "$(rate "$bytes" "$kiln_push")"
printf '%-14s %s\n' "skopeo push" "$(rate "$bytes" "$sk_push")"
