#!/usr/bin/env bash
# Soak the filter in real Envoy (issue 15): mixed valid mTLS, plaintext to
# STRICT and PERMISSIVE ports, smuggled and malformed XFCC, oversized headers,
# HTTP/1.1 keep-alive and HTTP/2 multiplexing, clients dropping mid-request.
#
#   tests/soak/soak.sh                      # 1,000,000 requests in 20 rounds
#   tests/soak/soak.sh --requests 20000     # the short variant (CI)
#
# Needs envoy, h2load, and the filter built (filter/build.sh -> out/peerauth_filter.wasm,
# or PEERAUTH_FILTER_WASM). Exits non-zero on any failed assertion.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f "${PEERAUTH_FILTER_WASM:-out/peerauth_filter.wasm}" ] || filter/build.sh
# cargo run, not target/release/...: the binary is wherever CARGO_TARGET_DIR puts it.
exec cargo run -q --release -p peerauth-tests --example soak -- "$@"
