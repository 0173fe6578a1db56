#!/usr/bin/env bash
# Issue 18's scale benchmark: generate meshes of several sizes
# (peerauth_cli::generate, example mesh_gen) and run peerauth check, describe and
# matrix variants under /usr/bin/time -v, printing one Markdown row per run:
# wall time, maximum RSS, output size. Results go to BENCHMARKS.md ("Scale") by hand.
#
#   bash cli/bench/scale.sh                # sizes 1000 5000 10000 20000 50000
#   SIZES="1000 5000" bash cli/bench/scale.sh
#
# Never runs a whole-matrix table at scale: 50,000 workloads make 5 billion cells.
# --only reset,fail runs at every size (above a million cells it lists them by
# client group); listing every reset cell (--only reset,fail --full) grows with
# the square of the mesh, so it runs only up to LIST_MAX workloads (default
# 10000); --json-lines of the whole matrix runs only up to STREAM_MAX (default
# 5000) and goes to /dev/null.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"1000 5000 10000 20000 50000"}
LIST_MAX=${LIST_MAX:-10000}
STREAM_MAX=${STREAM_MAX:-5000}
OUT=${OUT:-target/scale}
mkdir -p "$OUT"
cargo build --release -q -p peerauth-cli --bin peerauth --example mesh_gen
# Where cargo put them (each session builds in its own CARGO_TARGET_DIR).
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/peerauth
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC'); commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
echo
echo "| workloads | command | wall | max RSS | output |"
echo "|---:|---|---:|---:|---:|"

# run N LABEL ARGS...: one row, output counted (not stored).
run() {
    local n=$1 label=$2
    shift 2
    local bytes
    bytes=$( { /usr/bin/time -v "$BIN" "$@" 2> "$OUT/time.txt" || true; } | wc -c)
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MB", $2/1024}' "$OUT/time.txt")
    echo "| $n | \`$label\` | $wall | $rss | $bytes B |"
}

for n in $SIZES; do
    mesh="$OUT/mesh-$n.yaml"
    "$TARGET/release/examples/mesh_gen" "$n" > "$mesh"
    run "$n" "check" check "$mesh"
    run "$n" "check --json" check --json "$mesh"
    run "$n" "describe ns-00001/app-1" describe ns-00001/app-1 -f "$mesh"
    run "$n" "matrix (summary)" matrix -f "$mesh"
    run "$n" "matrix --only fail" matrix --only fail -f "$mesh"
    run "$n" "matrix --client-label app=app-1 --server-label app=app-2" \
        matrix --client-label app=app-1 --server-label app=app-2 -f "$mesh"
    run "$n" "matrix --only reset,fail" matrix --only reset,fail -f "$mesh"
    if [ "$n" -le "$LIST_MAX" ]; then
        run "$n" "matrix --only reset,fail --full" matrix --only reset,fail --full -f "$mesh"
    fi
    if [ "$n" -le "$STREAM_MAX" ]; then
        # To /dev/null: the rate of peerauth, not of the disk or a reader.
        /usr/bin/time -v "$BIN" matrix --json-lines -f "$mesh" > /dev/null 2> "$OUT/time.txt" || true
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/time.txt")
        rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MB", $2/1024}' "$OUT/time.txt")
        echo "| $n | \`matrix --json-lines > /dev/null\` ($((n * n * 2)) cells) | $wall | $rss | |"
    fi
    rm -f "$mesh"
done
