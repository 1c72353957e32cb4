# Tars made here (not committed): reproducible content with owners, modes,
# a symlink and a hard link.
set -e
mkdir -p tarsrc/top/sub
echo one > tarsrc/top/one
echo two > tarsrc/top/sub/two
chmod 600 tarsrc/top/one
chmod 750 tarsrc/top/sub
ln -s one tarsrc/top/link
ln tarsrc/top/one tarsrc/top/hard
tar --sort=name --mtime=@1700000000 --owner=1000 --group=1001 --numeric-owner -C tarsrc -cf archive.tar top
gzip -n -c archive.tar > archive.tar.gz
rm -rf tarsrc
