#!/usr/bin/env bash
# Whole-build benchmark: times `kiln build` — and `docker build` (BuildKit)
# and `buildah bud` when they are installed — on generated workloads, each
# cold, as a no-op rebuild and after one changed file. Medians go into a
# table (benches/results/build-<date>.md unless -o says otherwise).
#
#   benches/build.sh [-r RUNS] [-t kiln,docker,buildah] [-o FILE] [WORKLOAD…]
#
# Workloads (all generated; see gen_* below):
#   hello     FROM + RUN + COPY of one small file
#   bigctx    30,000-file context (4 KiB each) with a .dockerignore, COPY .
#   parallel  4 independent stages each sleeping 2 s, merged by COPY --from
#   bigcopy   10 × 100 MB files in one COPY
#   chain     40 RUN steps (the changed file is COPYed after step 20)
#   target    --target of a fast stage beside an unused 10 s stage
#
# Everything (contexts, kiln's store, dockerd's and buildah's storage) lives
# on a tmpfs mounted for the run, so the numbers are CPU and memory bound
# and comparable between tools, not bound to this machine's disk; memory is
# warmed before each timed build (BENCH_WARM_MB, see below). Needs
# root (tmpfs, namespaces). Installs hyperfine if missing (Debian package);
# docker (Debian package docker.io: a private dockerd is started with its
# own data root, no bridge or iptables, and stopped by PID) and buildah are
# timed only when already installed. KILN=PATH times that kiln binary
# instead of building this checkout's (a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

runs=5
tools=kiln,docker,buildah
out=""
while getopts "r:t:o:h" opt; do
  case $opt in
    r) runs=$OPTARG ;;
    t) tools=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n '2,25p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(hello bigctx parallel bigcopy chain target)
[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (tmpfs, namespaces)" >&2; exit 1; }

if ! command -v hyperfine >/dev/null; then
  echo "build.sh: installing hyperfine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hyperfine >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hyperfine >/dev/null; }
fi
command -v python3 >/dev/null || { echo "build.sh: python3 needed for the table" >&2; exit 1; }

have() { [[ ",$tools," == *",$1,"* ]]; }
docker_bin=${DOCKER:-/usr/bin/docker}
dockerd_bin=${DOCKERD:-/usr/sbin/dockerd}
if have docker && ! { [ -x "$docker_bin" ] && [ -x "$dockerd_bin" ]; }; then
  echo "build.sh: docker.io not installed; docker not timed"; tools=${tools//docker/}
fi
if have buildah && ! command -v buildah >/dev/null; then
  echo "build.sh: buildah not installed; buildah not timed"; tools=${tools//buildah/}
fi

if [ -n "${KILN:-}" ]; then
  # Another kiln binary (e.g. main before a change, for a before/after table).
  kiln_bin=$(realpath "$KILN")
  echo "build.sh: timing kiln $kiln_bin"
  cargo build -q --release --locked -p kiln-bench --bin bench-tree
else
  echo "build.sh: building kiln (release)"
  cargo build -q --release --locked -p kiln-cli -p kiln-bench --bin kiln --bin bench-tree
  kiln_bin=$repo/target/release/kiln
fi
cargo build -q --locked -p kiln-test-support --bin corpus-tool
tree_bin=$repo/target/release/bench-tree

work=$(mktemp -d /tmp/kiln-bench-build.XXXXXX)
mount -t tmpfs -o size=${BENCH_TMPFS_SIZE:-12g},mode=0755 tmpfs "$work"
dockerd_pid=""
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if command -v buildah >/dev/null && [ -d "$work/buildah" ]; then
    buildah --root "$work/buildah/root" --runroot "$work/buildah/run" rm --all >/dev/null 2>&1 || true
  fi
  { grep -o " $work/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  umount -l "$work" 2>/dev/null || true
  rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$work/ctx" "$work/json" "$work/kiln"

# These VMs back guest memory lazily: a page the guest freed a minute ago
# has gone back to the host, and touching it again costs ~4× (a 1 GiB write
# to a tmpfs: 2.2 s fresh, 0.5 s into pages freed seconds before). A build
# that adds gigabytes to the tmpfs (bigcopy's rebuilds) would time the
# host's paging, whichever tool runs. So every timed build's --prepare
# first writes and deletes BENCH_WARM_MB (default 3072; 0: off) on a tmpfs
# of its own: the build then gets pages the guest has just used.
warm_mb=${BENCH_WARM_MB:-3072}
if [ "$warm_mb" -gt 0 ]; then
  mkdir -p "$work/warm"
  mount -t tmpfs -o size=${warm_mb}m,mode=0700 tmpfs "$work/warm"
  printf 'dd if=/dev/zero of=%s/warm/f bs=1M count=%s status=none 2>/dev/null\nrm -f %s/warm/f\n' \
    "$work" "$warm_mb" "$work" >"$work/warm.sh"
else
  : >"$work/warm.sh"
fi
"$repo/target/debug/corpus-tool" base-tar "$work/base.tar"

# ---- workloads --------------------------------------------------------------
gen_hello() {
  printf 'FROM corpus/busybox\nRUN echo hello > /hello\nCOPY hello.txt /\n' >"$1/Dockerfile"
  echo hello >"$1/hello.txt"
  CHANGE_FILE=hello.txt
}
gen_bigctx() {
  "$tree_bin" "$1/tree" 30000 300 4096
  "$tree_bin" "$1/ignored" 2000 20 4096
  printf 'ignored/\n*.log\nDockerfile\n' >"$1/.dockerignore"
  echo log >"$1/build.log"
  printf 'FROM corpus/busybox\nCOPY . /ctx/\n' >"$1/Dockerfile"
  CHANGE_FILE=tree/d00007/f0000007
}
gen_parallel() {
  {
    for i in 1 2 3 4; do printf 'FROM corpus/busybox AS s%s\nRUN sleep 2 && echo %s > /out%s\n\n' "$i" "$i" "$i"; done
    echo 'FROM corpus/busybox'
    for i in 1 2 3 4; do echo "COPY --from=s$i /out$i /"; done
    echo 'COPY marker /'
  } >"$1/Dockerfile"
  echo 0 >"$1/marker"
  CHANGE_FILE=marker
}
gen_bigcopy() {
  "$tree_bin" "$1/big" 10 1 $((100 * 1024 * 1024))
  printf 'FROM corpus/busybox\nCOPY big /big/\n' >"$1/Dockerfile"
  CHANGE_FILE=big/d00000/f0000003
}
gen_chain() {
  {
    echo 'FROM corpus/busybox'
    for i in $(seq 1 40); do
      echo "RUN echo $i >> /chain"
      [ "$i" -eq 20 ] && echo 'COPY marker /'
    done
  } >"$1/Dockerfile"
  echo 0 >"$1/marker"
  CHANGE_FILE=marker
}
gen_target() {
  printf 'FROM corpus/busybox AS slow\nRUN sleep 10 && echo slow > /slow\n\nFROM corpus/busybox AS fast\nCOPY marker /\nRUN echo fast > /fast\n\nFROM slow\nCOPY --from=fast /fast /\n' >"$1/Dockerfile"
  echo 0 >"$1/marker"
  CHANGE_FILE=marker
  TARGET=fast
}

# Change one file in place without changing its size: a new counter value
# over its first bytes.
change_cmd() { # CTX FILE
  echo "sh -c 'date +%s%N | head -c 16 | dd of=$1/$2 bs=16 count=1 conv=notrunc status=none'"
}

# ---- tools ------------------------------------------------------------------
# Each tool has a reset script (empties its cache and images, keeps or
# remakes the base; run by hyperfine's --prepare, so not timed) and a build
# command line.
kiln_root=$work/kiln/root
cat >"$work/kiln-reset.sh" <<SH
rm -rf '$kiln_root'
'$kiln_bin' --root '$kiln_root' import '$work/base.tar' corpus/busybox >/dev/null
SH
kiln_build() { # CTX TAG
  local t=""; [ -n "${TARGET:-}" ] && t="--target $TARGET"
  echo "$kiln_bin --root $kiln_root build --progress plain --network none $t -t $2 $1"
}

start_dockerd() {
  mkdir -p "$work/docker/data" "$work/docker/exec"
  "$dockerd_bin" --bridge=none --iptables=false --ip-masq=false \
    --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
    --pidfile "$work/docker/pid" -H "unix://$work/docker/sock" >"$work/docker/log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/docker/sock" DOCKER_BUILDKIT=1
  for _ in $(seq 1 300); do "$docker_bin" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "build.sh: dockerd did not start:"; tail "$work/docker/log"; exit 1
}
cat >"$work/docker-reset.sh" <<SH
'$docker_bin' builder prune -af >/dev/null
ids=\$('$docker_bin' images -q 'bench/*')
[ -z "\$ids" ] || '$docker_bin' rmi -f \$ids >/dev/null
SH
docker_build() {
  local t=""; [ -n "${TARGET:-}" ] && t="--target $TARGET"
  echo "$docker_bin build --network none $t -t $2 $1"
}

bh="buildah --root $work/buildah/root --runroot $work/buildah/run --storage-driver overlay"
cat >"$work/buildah-reset.sh" <<SH
$bh rm --all >/dev/null
$bh rmi --all -f >/dev/null 2>&1 || true
c=\$($bh from scratch)
$bh add "\$c" '$work/base.tar' / >/dev/null
$bh commit -q "\$c" corpus/busybox >/dev/null
$bh rm "\$c" >/dev/null
SH
buildah_build() {
  local t=""; [ -n "${TARGET:-}" ] && t="--target $TARGET"
  echo "$bh bud --layers --isolation chroot --network none $t -t $2 $1"
}

if have docker; then
  start_dockerd
  "$docker_bin" import "$work/base.tar" corpus/busybox >/dev/null
fi
if have buildah; then mkdir -p "$work/buildah"; fi

# ---- measuring --------------------------------------------------------------
for w in "${workloads[@]}"; do
  ctx=$work/ctx/$w
  rm -rf "$ctx"; mkdir -p "$ctx"
  TARGET=""; CHANGE_FILE=""
  echo "build.sh: generating $w"
  "gen_$w" "$ctx"
  for tool in kiln docker buildah; do
    have "$tool" || continue
    build=$("${tool}_build" "$ctx" "bench/$w")
    reset="sh $work/$tool-reset.sh && sh $work/warm.sh"
    change="$(change_cmd "$ctx" "$CHANGE_FILE") && sh $work/warm.sh"
    j=$work/json/$w.$tool
    echo "build.sh: $w / $tool"
    hyperfine --style basic --runs "$runs" --prepare "$reset" --export-json "$j.cold.json" "$build" \
      >"$j.err" 2>&1 || { cat "$j.err"; echo "build.sh: $w / $tool cold failed" >&2; continue; }
    hyperfine --style basic --runs "$runs" --warmup 1 --export-json "$j.noop.json" "$build" \
      >"$j.err" 2>&1 || { cat "$j.err"; echo "build.sh: $w / $tool no-op failed" >&2; }
    hyperfine --style basic --runs "$runs" --prepare "$change" --export-json "$j.changed.json" "$build" \
      >"$j.err" 2>&1 || { cat "$j.err"; echo "build.sh: $w / $tool one-file-changed failed" >&2; }
    # Free the tmpfs for the next tool (10 × 100 MB builds pile up fast).
    sh "$work/$tool-reset.sh" >/dev/null 2>&1 || true
  done
  rm -rf "$ctx"
done

mkdir -p "$repo/benches/results"
[ -n "$out" ] || out=$repo/benches/results/build-$(date -u +%Y%m%d-%H%M).md
WARM_MB=$warm_mb python3 - "$work/json" "$out" "$runs" "${workloads[@]}" <<'PY'
import json, os, sys, platform
jdir, out, runs, workloads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
tools = ["kiln", "docker", "buildah"]
present = [t for t in tools if any(os.path.exists(f"{jdir}/{w}.{t}.cold.json") for w in workloads)]
def med(w, t, s):
    p = f"{jdir}/{w}.{t}.{s}.json"
    try:
        return json.load(open(p))["results"][0]["median"]
    except (OSError, ValueError, KeyError, IndexError):
        return None  # not timed, or the runs failed (see the log)
lines = [f"Whole-build medians in seconds ({runs} runs each; tmpfs, {os.environ['WARM_MB']} MiB warmed before each build; {os.cpu_count()} cores; {platform.node()})", "",
         "| workload | scenario | " + " | ".join(present) + (" | docker/kiln (>1: kiln faster) |" if "docker" in present else " |"),
         "|---|---|" + "---|" * len(present) + ("---|" if "docker" in present else "")]
for w in workloads:
    for s, name in (("cold", "cold"), ("noop", "no-op"), ("changed", "one file changed")):
        vals = [med(w, t, s) for t in present]
        row = f"| {w} | {name} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in vals) + " |"
        if "docker" in present:
            k, d = med(w, "kiln", s), med(w, "docker", s)
            row += (f" {d / k:.2f}× |" if k and d else " — |")
        lines.append(row)
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
echo "build.sh: table written to $out"
