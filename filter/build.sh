#!/usr/bin/env bash
# Build the size-optimised filter: out/peerauth_filter.wasm at the repository root.
# Uses `wasm-opt -Oz` (Debian package `binaryen`) when it is installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build -p peerauth-filter --target wasm32-wasip1 --profile wasm
built="$target/wasm32-wasip1/wasm/peerauth_filter.wasm"
mkdir -p "$root/out"
if command -v wasm-opt >/dev/null 2>&1; then
  wasm-opt -Oz --strip-debug --strip-producers \
    --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals \
    "$built" -o "$root/out/peerauth_filter.wasm"
else
  echo "build.sh: wasm-opt not found (apt-get install binaryen); copying the cargo build" >&2
  cp "$built" "$root/out/peerauth_filter.wasm"
fi
echo "cargo build: $(stat -c %s "$built") bytes; out/peerauth_filter.wasm: $(stat -c %s "$root/out/peerauth_filter.wasm") bytes"
