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
#
# CPU is user+sys of every process of the runs, detached ones included:
# the timing loop is a child subreaper, so the reaper a `kiln run` leaves
# to remove its directories (see crate runtime's `trash`) is counted too,
# once it has finished (after the wall clock stopped).
#
# BASELINE_KILN=/path/to/an/older/kiln also times that binary, with a store
# of its own (a kiln that opens the database on every run would make the
# new one's lookup cache miss), interleaved run by run with the new one.
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
base=${BASELINE_KILN:-}
base_root=$work/kiln-root-baseline
if [ -n "$base" ]; then
  "$base" --root "$base_root" import "$work/rootfs.tar" bench >/dev/null
  "$base" --root "$base_root" run --rm bench true
fi

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
export kiln steps work n root base base_root
unshare -m --propagation private bash -euo pipefail -c '
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  umount -l /sys/fs/cgroup/unified
fi

# CPU ticks (user+sys) of process $1 and of its children it has waited for.
cpu_ticks() {
  awk "{ print \$14 + \$15 + \$16 + \$17 }" "/proc/$1/stat"
}

# "WALL (CPU)" ms per run of each command line given (one argument each,
# split on spaces; {i} becomes a number unique to the run), N times after
# 3 warm-up runs (the first shows its
# output), the commands taking turns run by run. CPU is user+sys of all
# processes of the runs (the runtime, its helpers, the container) and of
# detached processes (the reapers of kiln; counted with the first command, the
# only one that leaves any; the reaper of a warm-up run may add a little). Any
# failing run stops the script.
per_run() {
  python3 - "$n" "$@" <<"PY"
import ctypes, os, statistics, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
n = int(sys.argv[1]); cmds = [c.split() for c in sys.argv[2:]]
runs = 0
null = os.open("/dev/null", os.O_RDWR)
wall = [[] for _ in cmds]; cpu = [[] for _ in cmds]
def spawn(argv, quiet=True):
    acts = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in ((0, 1, 2) if quiet else (0, 1))]
    return os.posix_spawnp(argv[0], argv, os.environ, file_actions=acts)
def reap_orphans(block):  # CPU of detached processes that have ended
    total = 0.0
    while True:
        try:
            pid, _, ru = os.wait4(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return total
        if pid == 0:
            return total
        total += ru.ru_utime + ru.ru_stime
orphans = 0.0
for i in range(n + 3):
    for k, argv in enumerate(cmds):
        runs += 1
        t0 = time.monotonic_ns()
        pid = spawn([a.replace("{i}", str(runs)) for a in argv], quiet=i > 0)
        _, status, ru = os.wait4(pid, 0)
        t1 = time.monotonic_ns()
        if status != 0:
            cmd = " ".join(argv)
            sys.exit(f"run.sh: `{cmd}` failed ({status})")
        if i >= 3:
            wall[k].append((t1 - t0) / 1e6)
            cpu[k].append((ru.ru_utime + ru.ru_stime) * 1000)
        # Runs follow each other at once, as in a script: a detached
        # reaper may still work while the next run starts.
        late = reap_orphans(False)
        if i >= 3:
            orphans += late
# Only the first command (the new kiln) leaves detached processes: their
# CPU is spread evenly over its runs.
extra = (orphans + reap_orphans(True)) * 1000 / n
cpu[0] = [c + extra for c in cpu[0]]
print("\n".join(
    f"{statistics.mean(w):6.2f} ({statistics.mean(c):5.2f})   median {statistics.median(w):6.2f} ({statistics.median(c):5.2f})"
    for w, c in zip(wall, cpu)))
PY
}
echo "load: $(cut -d" " -f1-3 /proc/loadavg)"
echo "ms per run of \`true\`, mean wall (cpu), median wall (cpu), $n runs each:"
if [ -n "$base" ]; then
  lines=$(per_run "$kiln --root $root run --rm bench true" "$base --root $base_root run --rm bench true")
  printf "  %-28s %s\n" "kiln run --rm IMAGE true" "$(sed -n 1p <<<"$lines")"
  printf "  %-28s %s\n" "  baseline (BASELINE_KILN)" "$(sed -n 2p <<<"$lines")"
else
  printf "  %-28s %s\n" "kiln run --rm IMAGE true" "$(per_run "$kiln --root $root run --rm bench true")"
fi
lower=$(dirname "$(find "$root/snapshots" -mindepth 2 -maxdepth 2 -name bin | head -1)")
t0=$(date +%s%N)
c0=$(cpu_ticks $$)
"$steps" "$work/step-state" "$lower" "$n" >/dev/null
t1=$(date +%s%N)
c1=$(cpu_ticks $$)
# run-steps does 3 warm-up steps besides the N timed ones.
printf "  %-28s %s\n" "RUN-step API (run_step)" "$(awk -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
  "BEGIN { printf \"%6.2f (%5.2f)\", t / (n + 3) / 1e6, c / hz * 1000 / (n + 3) }")"
line=$(per_run "runc run --bundle $work/bundle bench-$$-{i}")
printf "  %-28s %s\n" "runc run ($(runc --version | head -1 | cut -d" " -f3))" "$line"
line=$(per_run "crun --cgroup-manager=disabled run --bundle $work/bundle bench-$$-{i}")
printf "  %-28s %s\n" "crun run ($(crun --version | head -1 | cut -d" " -f3))" "$line"
echo "load: $(cut -d" " -f1-3 /proc/loadavg)"
'
