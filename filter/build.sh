#!/usr/bin/env bash
# Build the size-optimised filter: out/peerauth_filter.wasm at the repository root.
# Uses `wasm-opt -Oz` (Debian package `binaryen`) when it is installed.
# PEERAUTH_FILTER_EXPORTS (a subset of the exports below) and PEERAUTH_FILTER_OUT
# (another output path) are for tests/bench/rss_by_code.py, which prices the
# server Envoy's memory by how much of the filter's code a module holds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build -p peerauth-filter --target wasm32-wasip1 --profile wasm
built="$target/wasm32-wasip1/wasm/peerauth_filter.wasm"
out="${PEERAUTH_FILTER_OUT:-$root/out/peerauth_filter.wasm}"
mkdir -p "$(dirname "$out")"
features="--enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals"
# Envoy calls a callback only when the module exports it, so the exports
# below are all the filter keeps: filter/src/host.rs writes the proxy-wasm ABI
# by hand and exports exactly these; metadce removes anything else (and the code
# only an export reached). Implementing another callback in filter/src/host.rs
# means adding it here (tests/tests/filter_module.rs checks the two agree).
keep="memory _initialize proxy_abi_version_0_2_1 proxy_on_memory_allocate
      proxy_on_vm_start proxy_on_configure proxy_on_context_create
      proxy_on_tick proxy_on_request_headers proxy_on_downstream_data
      proxy_on_upstream_data proxy_on_downstream_connection_close"
keep="${PEERAUTH_FILTER_EXPORTS:-$keep}"
if command -v wasm-opt >/dev/null 2>&1 && command -v wasm-metadce >/dev/null 2>&1; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  {
    echo "["
    sep=""
    for e in $keep; do
      printf '%s{"name": "%s", "root": true, "export": "%s"}\n' "$sep" "$e" "$e"
      sep=","
    done
    echo "]"
  } > "$work/graph.json"
  # shellcheck disable=SC2086
  wasm-metadce $features -f "$work/graph.json" "$built" -o "$work/dce.wasm" > /dev/null
  # -ocimfs 100: a function with one caller is inlined only up to 100 bytes
  # (binaryen's default inlines it whatever its size). Envoy's V8 compiles every
  # function with TurboFan when the module loads (proxy-wasm-cpp-host turns
  # Liftoff off), in each VM, and tcmalloc keeps the peak: with the default one
  # function grew to 28 KB and the server Envoy's RSS was 104.8 MiB, with 100 the
  # largest is 10.6 KB and the RSS 96.5 MiB, for 711 bytes more (BENCHMARKS.md).
  # shellcheck disable=SC2086
  wasm-opt -Oz -ocimfs 100 --strip-debug --strip-producers $features \
    "$work/dce.wasm" -o "$out"
else
  echo "build.sh: wasm-opt/wasm-metadce not found (apt-get install binaryen); copying the cargo build" >&2
  cp "$built" "$out"
fi
echo "cargo build: $(stat -c %s "$built") bytes; $out: $(stat -c %s "$out") bytes"
