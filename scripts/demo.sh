#!/usr/bin/env bash
# kiln's main job end to end on a fresh machine: build kiln, then use it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p kiln-cli
kiln=$PWD/target/release/kiln
"$kiln" --version
