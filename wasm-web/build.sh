#!/usr/bin/env bash
# Build the static page into out/web/: the wasm module (size-optimised), its
# wasm-bindgen JS glue, the hand-written page and the examples generated from
# manifests/. Serve out/web/ with any static file server.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${PEERAUTH_WEB_OUT:-$root/out/web}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
want_bindgen="0.2.130"

export PATH="$HOME/.cargo/bin:$PATH"
if ! wasm-bindgen --version 2>/dev/null | grep -q " $want_bindgen\$"; then
  echo "build.sh: wasm-bindgen $want_bindgen is required (it must match the wasm-bindgen crate);" >&2
  echo "          install it with: cargo install wasm-bindgen-cli --version $want_bindgen" >&2
  exit 2
fi
command -v node >/dev/null || { echo "build.sh: node is required to generate examples.js (apt-get install nodejs)" >&2; exit 2; }

cd "$root"
# Keep the `target_features` section for wasm-bindgen (the shared `wasm` profile
# strips it). opt-level "s" by default: on 1,000 policies × 100 workloads
# (tests/browser/bench.mjs) it gets its result in ~70 ms in Chromium for a module
# of ~480 KiB; "2" is faster (~55 ms) but ~540 KiB, "z" is ~420 KiB but ~100-150 ms
# (V8 runs the YAML scanner's and the allocator's un-inlined calls slowly).
# PEERAUTH_WEB_OPT_LEVEL overrides it; see BENCHMARKS.md.
CARGO_PROFILE_WASM_STRIP=false \
CARGO_PROFILE_WASM_OPT_LEVEL="${PEERAUTH_WEB_OPT_LEVEL:-s}" \
  cargo build --quiet -p peerauth-web --target wasm32-unknown-unknown --profile wasm

rm -rf "$out"
mkdir -p "$out/pkg"
raw="$target_dir/wasm32-unknown-unknown/wasm/peerauth_web.wasm"
# wasm-opt runs on rustc's output, before wasm-bindgen: Debian's binaryen 108 run on
# wasm-bindgen's output turns its externref table into a funcref one, which the
# browser then refuses ("function-typed object must be null"). wasm-bindgen keeps
# the custom sections it needs and adds only small glue afterwards.
if command -v wasm-opt >/dev/null; then
  wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-sign-ext \
    --enable-nontrapping-float-to-int --enable-mutable-globals --enable-reference-types \
    --enable-multivalue "$raw" -o "$out/peerauth_web.opt.wasm"
  raw="$out/peerauth_web.opt.wasm"
else
  echo "build.sh: wasm-opt not found, the module is not -Oz optimised (apt-get install binaryen)" >&2
fi
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" --out-name peerauth_web "$raw"
rm -f "$out/peerauth_web.opt.wasm"
wasm="$out/pkg/peerauth_web_bg.wasm"

cp -R "$root/wasm-web/www/." "$out/"
node "$root/wasm-web/examples.mjs" "$root/manifests" "$root/wasm-web/examples" > "$out/examples.js"

size=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "built $out (peerauth_web_bg.wasm: $size bytes, $gz gzipped)"
echo "open it with: python3 -m http.server -d $out 8080 --bind 127.0.0.1, then http://127.0.0.1:8080/"
