#!/usr/bin/env bash
# Per-step overhead of kiln's bundled runtime, beside runc and crun.
#
#   benches/run.sh [N]          (as root; N defaults to 50)
#
# Times, each N times in sequence, of `true` in a busybox root file system:
#   kiln run --rm IMAGE true     the whole `kiln run` command (store lookup,
#                                container registry, helper, fresh overlay)
#   RUN-step API                 kiln_runtime::Runtime::run_step, as the
#                                solver calls it for `RUN true` (binary
#                                `run-steps` of package kiln-bench)
#   runc run / crun run          an OCI bundle of the same root file system
#                                (pid, ipc, uts, mount namespaces; host
#                                network, like kiln's default), no overlay
# and prints ms/run for each. Installs runc and crun (Debian packages) when
# missing. Work files live under $BENCH_DIR (default: a temp dir in /tmp);
# say which file system that is when reporting numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-50}
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (namespaces, overlayfs)" >&2; exit 1; }

missing=()
for tool in runc crun; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release --locked -q -p kiln-cli -p kiln-bench --bin kiln --bin run-steps
kiln=$PWD/target/release/kiln
steps=$PWD/target/release/run-steps

work=${BENCH_DIR:-$(mktemp -d /tmp/kiln-run-bench.XXXXXX)}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
echo "work dir: $work ($(stat -f -c %T "$work"))"

# A busybox root file system: /bin/busybox and a link per applet.
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"

root=$work/kiln-root
tar -C "$rootfs" -cf "$work/rootfs.tar" .
"$kiln" --root "$root" import "$work/rootfs.tar" bench >/dev/null
"$kiln" --root "$root" run --rm bench true   # unpacks the snapshot once

# The OCI bundle: runc's default spec, not a terminal, host network, `true`.
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["true"]
spec["root"]["readonly"] = False
spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] not in ("network", "cgroup")]
json.dump(spec, open(path, "w"), indent=2)
PY

# The timed loops run in a private mount namespace: on a hybrid cgroup host
# whose cgroup2 hierarchy has controllers crun refuses to start ("cgroups in
# hybrid mode not supported"), so the cgroup2 mount is hidden from it there.
# crun runs with `--cgroup-manager=disabled` (kiln makes no cgroups either);
# runc has no such switch and makes its cgroups.
export kiln steps work n root
unshare -m --propagation private bash -euo pipefail -c '
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  umount -l /sys/fs/cgroup/unified
fi

# CPU ticks (user+sys) of process $1 and of its children it has waited for.
cpu_ticks() {
  awk "{ print \$14 + \$15 + \$16 + \$17 }" "/proc/$1/stat"
}

# "WALL (CPU)" ms per run of "$@", N times in sequence after 3 warm-up runs
# (the first shows its output). CPU is user+sys of all processes of the runs
# (the runtime, its helpers, the container). Any failing run stops the script.
per_run() {
  local i
  "$@" >/dev/null
  for i in 1 2; do "$@" >/dev/null 2>&1; done
  local t0 c0 t1 c1 me=$BASHPID
  t0=$(date +%s%N)
  c0=$(cpu_ticks "$me")
  for ((i = 0; i < n; i++)); do
    "$@" >/dev/null 2>&1 || { echo "run.sh: \`$*\` failed" >&2; exit 1; }
  done
  t1=$(date +%s%N)
  c1=$(cpu_ticks "$me")
  awk -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
    "BEGIN { printf \"%6.2f (%5.2f)\", t / n / 1e6, c / hz * 1000 / n }"
}
runtime_ids=0
oci_run() {  # oci_run TOOL [FLAGS]: one `TOOL run` with a fresh container id
  runtime_ids=$((runtime_ids + 1))
  "$@" run --bundle "$work/bundle" "bench-$$-$runtime_ids"
}

echo "load: $(cut -d" " -f1-3 /proc/loadavg)"
echo "ms per run of \`true\`, wall (cpu), $n runs in sequence:"
line=$(per_run "$kiln" --root "$root" run --rm bench true)
printf "  %-28s %s\n" "kiln run --rm IMAGE true" "$line"
lower=$(dirname "$(find "$root/snapshots" -mindepth 2 -maxdepth 2 -name bin | head -1)")
t0=$(date +%s%N)
c0=$(cpu_ticks $$)
"$steps" "$work/step-state" "$lower" "$n" >/dev/null
t1=$(date +%s%N)
c1=$(cpu_ticks $$)
# run-steps does 3 warm-up steps besides the N timed ones.
printf "  %-28s %s\n" "RUN-step API (run_step)" "$(awk -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
  "BEGIN { printf \"%6.2f (%5.2f)\", t / (n + 3) / 1e6, c / hz * 1000 / (n + 3) }")"
line=$(per_run oci_run runc)
printf "  %-28s %s\n" "runc run ($(runc --version | head -1 | cut -d" " -f3))" "$line"
line=$(per_run oci_run crun --cgroup-manager=disabled)
printf "  %-28s %s\n" "crun run ($(crun --version | head -1 | cut -d" " -f3))" "$line"
echo "load: $(cut -d" " -f1-3 /proc/loadavg)"
'
