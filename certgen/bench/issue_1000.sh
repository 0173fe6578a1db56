#!/usr/bin/env bash
# Issue N (default 1000) EC P-256 SPIFFE workload certificates from one
# intermediate CA three ways and print the wall time of each:
#   1. the certgen library in one process (examples/issue_many.rs);
#   2. the certgen binary, one process per certificate (writes cert, key, chain);
#   3. an openssl loop, one `req` + one `x509 -req` per certificate, with the
#      same extensions (critical URI SAN, critical KU digitalSignature,
#      EKU serverAuth+clientAuth, random 128-bit serial).
# Run from anywhere: bash certgen/bench/issue_1000.sh [N]
set -euo pipefail
N="${1:-1000}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --quiet --release -p certgen --bins --examples --manifest-path "$ROOT/Cargo.toml"
BIN="$CARGO_TARGET_DIR/release/certgen"
LIB="$CARGO_TARGET_DIR/release/examples/issue_many"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$BIN" root --out certs >/dev/null
"$BIN" intermediate --root certs --cluster c1 >/dev/null
CA=certs/c1

now() { date +%s.%N; }
report() { awk -v a="$2" -v b="$3" -v n="$N" -v what="$1" \
  'BEGIN { t = b - a; printf "%-28s %4d certs in %7.3f s (%8.1f µs/cert)\n", what, n, t, t * 1e6 / n }'; }

"$LIB" "$CA" "$N" >/dev/null # warm-up
t0=$(now); "$LIB" "$CA" "$N" >/dev/null; t1=$(now)
report "certgen library" "$t0" "$t1"

t0=$(now)
for i in $(seq 1 "$N"); do
  "$BIN" workload --ca "$CA" --namespace bench --service-account "sa-$i" --out "cg/$i" >/dev/null
done
t1=$(now)
report "certgen binary (1 proc/cert)" "$t0" "$t1"

t0=$(now)
mkdir -p ossl
for i in $(seq 1 "$N"); do
  printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/bench/sa/sa-%s\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n' "$i" > ossl/ext
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "ossl/$i.key" -subj "/" -out ossl/csr 2>/dev/null
  openssl x509 -req -in ossl/csr -CA "$CA/ca-cert.pem" -CAkey "$CA/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days 1 -extfile ossl/ext -out "ossl/$i.pem" 2>/dev/null
done
t1=$(now)
report "openssl loop (3 proc/cert)" "$t0" "$t1"

# The openssl certs really are what we think: one sample through our verify.
"$BIN" verify "ossl/$N.pem" --ca "$CA" >/dev/null && echo "sample openssl cert passes certgen verify (SPIFFE lint included)"
"$BIN" verify "cg/$N/cert.pem" --ca "$CA" >/dev/null && echo "sample certgen cert passes certgen verify (SPIFFE lint included)"
