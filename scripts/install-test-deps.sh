#!/usr/bin/env bash
# Installs every system package kiln's tests need (Debian; run as root).
# Idempotent: packages already present are not reinstalled, and apt's lists
# are refreshed only when something is missing.
set -euo pipefail

# One package per line, with the tests that need it.
packages=(
  git            # context + cli remote_context: git URL sources (git daemon, fake ssh); conformance harness
  bsdutils       # cli remote_context: script(1) gives kiln a terminal (progress bars)
  python3        # conformance checkers (../shared/conformance)
  busybox-static # runtime + `kiln run` *_needs_root tests: kiln-test-support's static busybox base image
  skopeo         # store/cli tests: OCI layout and docker-archive interop
  umoci          # store tests: `umoci unpack` of ROOT/oci
  bzip2          # cli import tests: a bzip2-compressed rootfs tar
  xz-utils       # cli import tests: an xz-compressed rootfs tar
  zstd           # cli import tests: a zstd-compressed rootfs tar; layer bench baselines
  docker-registry # registry + cli pull/push tests: a real distribution registry on 127.0.0.1
  apache2-utils  # registry tests: `htpasswd -B` for the Basic-auth registry
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing packages ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for tool in cargo rustc; do
  command -v "$tool" >/dev/null || { echo "install-test-deps: $tool not found (install a Rust toolchain)" >&2; exit 1; }
done
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
