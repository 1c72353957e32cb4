#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/<target>/) with valid inputs, so that
# libFuzzer starts from real Dockerfiles and tars instead of guessing tar
# header checksums: kiln's Dockerfile fixtures; small layer tars (files,
# directories, symlinks, hard links, whiteouts; plain, gzip, zstd) made
# with the system tar; docker and OCI archives made by `kiln save`.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
corpus=$here/corpus
mkdir -p "$corpus/dockerfile" "$corpus/layer_apply" "$corpus/load"

for f in ../testdata/dockerfile/*/*/Dockerfile ../examples/*/Dockerfile; do
  cp "$f" "$corpus/dockerfile/$(echo "${f#../}" | tr / _)"
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tree=$scratch/tree
mkdir -p "$tree/etc/sub" "$tree/bin"
echo hello > "$tree/etc/hosts"
echo data > "$tree/etc/sub/file"
ln -s ../etc/hosts "$tree/bin/link"
ln "$tree/etc/hosts" "$tree/etc/hard"
touch "$tree/etc/.wh.gone" "$tree/etc/sub/.wh..wh..opq"
chmod 4755 "$tree/bin"
tar -C "$tree" -cf "$corpus/layer_apply/layer.tar" .
tar -C "$tree" --format=pax -cf "$corpus/layer_apply/layer-pax.tar" .
gzip -c "$corpus/layer_apply/layer.tar" > "$corpus/layer_apply/layer.tar.gz"
if command -v zstd >/dev/null; then
  zstd -q -c "$corpus/layer_apply/layer.tar" > "$corpus/layer_apply/layer.tar.zst"
fi

# Archives: a one-layer image imported and saved by kiln itself.
cargo build -q --manifest-path ../Cargo.toml -p kiln-cli
kiln=../target/debug/kiln
root=$scratch/root
rm -f "$tree/etc/.wh.gone" "$tree/etc/sub/.wh..wh..opq"
tar -C "$tree" -cf "$scratch/rootfs.tar" .
"$kiln" --root "$root" import -c 'CMD ["sh"]' "$scratch/rootfs.tar" seed >/dev/null
"$kiln" --root "$root" save -o "$corpus/load/docker.tar" seed
"$kiln" --root "$root" save --format oci -o "$corpus/load/oci.tar" seed
gzip -c "$corpus/load/docker.tar" > "$corpus/load/docker.tar.gz"
echo "seeded: $(ls "$corpus"/* | wc -l) files under $corpus"
