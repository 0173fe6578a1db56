#!/usr/bin/env bash
# Make Istio's plug-in CA for one cluster with certgen, check it as istiod would, and
# write the `cacerts` Secret to apply before installing Istio. Nothing here is committed:
# the output holds private keys (see README.md).
#
#   manifests/cacerts/make-cacerts.sh [OUT_DIR] [CLUSTER]
#   kubectl create namespace istio-system
#   kubectl apply -f OUT_DIR/CLUSTER/cacerts.yaml
set -euo pipefail

out=${1:-out/cacerts}
cluster=${2:-cluster1}
repo=$(cd "$(dirname "$0")/../.." && pwd)

if command -v certgen >/dev/null 2>&1; then
  certgen=(certgen)
else
  certgen=(cargo run --quiet --release --manifest-path "$repo/Cargo.toml" -p certgen --)
fi

mkdir -p "$out"
# The root's key stays offline in a real mesh; only the intermediate goes to the cluster.
"${certgen[@]}" root --out "$out" --org peerauth --cn "peerauth root CA"
"${certgen[@]}" intermediate --root "$out" --cluster "$cluster" --out "$out/$cluster"
# istiod refuses to start on a folder whose chain, key or CA flags are wrong; check first.
"${certgen[@]}" verify --cacerts "$out/$cluster"
"${certgen[@]}" secret cacerts --ca "$out/$cluster" --namespace istio-system \
  --out "$out/$cluster/cacerts.yaml" --force
echo "apply with: kubectl apply -f $out/$cluster/cacerts.yaml   (before installing Istio)"
