#!/usr/bin/env bash
# Makes a tiny root filesystem from Debian's busybox-static for the runtime
# tests: /bin/busybox plus a link per applet, /etc/passwd and /etc/group
# with root, alice (1000, in groups users and wheel) and nobody.
# Usage: busybox-rootfs.sh DIR
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
# busybox-static installs a statically linked /bin/busybox (it replaces the
# dynamic `busybox` package), so it runs in a root without libc.
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-rootfs: $bb not found (scripts/install-test-deps.sh installs busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,etc,tmp,root,home/alice,proc,sys,dev}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for applet in $("$dir/bin/busybox" --list); do
  [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:Alice:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$dir/etc/group" <<'G'
root:x:0:
users:x:100:alice
wheel:x:10:alice
alice:x:1000:
nogroup:x:65534:
G
chown 1000:1000 "$dir/home/alice"
