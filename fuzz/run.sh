#!/usr/bin/env bash
# Runs every fuzz target for a bounded number of executions and prints, per
# target, the executions, crashes and corpus size (what `make fuzz` calls).
#
#   fuzz/run.sh                      # every target, 10,000,000 runs each
#   RUNS=1000000 fuzz/run.sh xfcc    # one target, fewer runs
#   fuzz/run.sh --seed               # only refresh the seeds, no fuzzing
#   fuzz/run.sh --cmin               # minimise each corpus in place afterwards
#   MAX_TIME=240 fuzz/run.sh         # also stop each target after 240 s
#   SANITIZER=address fuzz/run.sh    # with ASan (default: none, with overflow checks)
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to
# fuzz/corpus/<target>/; crashes to fuzz/artifacts/<target>/ (copy each into
# the corpus once fixed: the replay tests under `cargo test` then keep it).
set -uo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
MAX_LEN=${MAX_LEN:-65536}
MAX_TIME=${MAX_TIME:-0}
TOOLCHAIN=${TOOLCHAIN:-+nightly}
# The code under test is safe Rust (policy and certgen forbid unsafe; the
# filter's only unsafe code is its wasm host ABI, not built here), so ASan
# finds nothing there and costs 2-10x the executions; overflow checks and
# debug assertions (-a) do find bugs in safe code, so they are on.
SAN=(-s "${SANITIZER:-none}" -a)
ALL=(xfcc manifest spiffe plugin_config filter_json cert_der cert_valid decide proxy_dump)
seed_only=0 cmin=0 targets=()
for a in "$@"; do
  case "$a" in
    --seed) seed_only=1 ;;
    --cmin) cmin=1 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) targets+=("$a") ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")

# Stores the seed on stdin under its SHA-1, the name libFuzzer gives every
# input, so a seed already in the (minimised) corpus is not added again.
put() {
  local tmp name
  tmp=$(mktemp)
  cat >"$tmp"
  name=$(sha1sum <"$tmp" | cut -c1-40)
  if [ -e "corpus/$1/$name" ]; then rm "$tmp"; else mv "$tmp" "corpus/$1/$name"; chmod 644 "corpus/$1/$name"; fi
}

seed() {
  mkdir -p corpus/{xfcc,manifest,spiffe,plugin_config,filter_json}
  local f line
  for f in ../manifests/workloads/*.yaml ../manifests/steps/*/*.yaml ../manifests/wasmplugin/*.yaml \
           ../manifests/lab/scenarios/*/*.yaml; do
    put manifest <"$f"
  done
  while IFS= read -r line; do
    printf '%b' "$line" | put spiffe
  done <<'IDS'
spiffe://cluster.local/ns/bar/sa/sleep
spiffe://cluster.local/ns/*/sa/istio-ingressgateway-service-account
spiffe://*/ns/istio-system/sa/*
spiffe://example.org/ns/foo/**
spiffe://cluster.local/ns/foo/sa/sleep\nspiffe://cluster.local/ns/foo/sa/sleep
IDS
  while IFS= read -r line; do
    printf '%s' "$line" | put plugin_config
    printf '%s' "$line" | put filter_json
  done <<'CONFIGS'
{"mtls":{"mode":"STRICT"}}
{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"8080":{"mode":"STRICT"},"9090":{"mode":"DISABLE"}},"action":"audit","xfcc":"strip","protocol":"http"}
{"workload":{"namespace":"foo","labels":{"app":"httpbin"}},"rootNamespace":"istio-system","peerAuthentications":[{"metadata":{"name":"default","namespace":"istio-system"},"spec":{"mtls":{"mode":"STRICT"}}},{"metadata":{"name":"p","namespace":"foo"},"spec":{"selector":{"matchLabels":{"app":"httpbin"}},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}}]}
{"mtls":{"mode":"STRICT"},"trustedForwarders":["spiffe://cluster.local/ns/istio-system/sa/*"],"allowedTrustDomains":["cluster.local"],"allowedIdentities":{"*":["spiffe://cluster.local/ns/bar/**"],"8080":["spiffe://cluster.local/ns/foo/sa/sleep"]}}
{"protocol":"tcp","mtls":{"mode":"STRICT"},"x":[1,-2.5e10,true,null,"\u00e9\ud83d\ude00"]}
CONFIGS
  cargo $TOOLCHAIN run -q --bin seeds
}

seed
[ $seed_only -eq 1 ] && exit 0

status=0
printf '%-14s %14s %8s %12s %10s\n' target executions crashes corpus_files seconds
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t" "corpus/$t"
  before=$(ls "artifacts/$t" | wc -l)
  start=$(date +%s)
  cargo $TOOLCHAIN fuzz run "${SAN[@]}" "$t" "corpus/$t" -- -runs="$RUNS" -max_len="$MAX_LEN" -max_total_time="$MAX_TIME" \
    -print_final_stats=1 >"artifacts/$t.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "artifacts/$t.log" | tail -1)
  crashes=$(( $(ls "artifacts/$t" | wc -l) - before ))
  if [ $cmin -eq 1 ] && [ $rc -eq 0 ]; then
    # cmin renames every file to its SHA-1; the XFCC ok-*/bad-* seeds keep
    # their names, since policy/tests/xfcc.rs asserts what each name says.
    named=$(mktemp -d)
    [ "$t" = xfcc ] && cp corpus/xfcc/ok-* corpus/xfcc/bad-* "$named/" 2>/dev/null
    # Edges only (-use_counters=0): the committed corpus stays small (manifest:
    # 1,427 files instead of 6,235 keeping hit-count buckets too).
    cargo $TOOLCHAIN fuzz cmin "${SAN[@]}" "$t" "corpus/$t" -- -use_counters=0 >>"artifacts/$t.log" 2>&1
    cp -n "$named"/* "corpus/$t/" 2>/dev/null
    rm -rf "$named"
  fi
  printf '%-14s %14s %8s %12s %10s\n' "$t" "${execs:-?}" "$crashes" "$(ls "corpus/$t" | wc -l)" "$secs"
  if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "  $t: exit $rc; log artifacts/$t.log; inputs in artifacts/$t/" >&2
  fi
done
exit $status
