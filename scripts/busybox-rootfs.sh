#!/usr/bin/env bash
# Makes a minimal root filesystem from Debian's busybox-static (no public
# registry is reachable, so this is the demo's base image): /bin/busybox, a
# symlink per applet, /etc/passwd and /etc/group, the usual directories.
# kiln-test-support's busybox_rootfs builds the same tree for the tests.
# Usage: busybox-rootfs.sh DIR
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-rootfs: $bb not found (scripts/install-test-deps.sh installs busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home/alice,dev,proc,sys,var/tmp,run}
chmod 1777 "$dir/tmp" "$dir/var/tmp"
chmod 700 "$dir/root"
cp "$bb" "$dir/bin/busybox"
chmod 755 "$dir/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  depth=$(tr -cd / <<<"$applet" | wc -c)
  target=$(printf '../%.0s' $(seq 1 "$depth"))bin/busybox
  [ -e "$dir/$applet" ] || ln -s "$target" "$dir/$applet"
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
echo kiln > "$dir/etc/hostname"
chown 1000:1000 "$dir/home/alice"
