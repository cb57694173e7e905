#!/usr/bin/env bash
# Add or delete a fake (KWOK) GPU node of any SKU in the presets catalog.
#
# Why: tests, demos and the quick start need GPU nodes without GPUs. The Node is built by
# kaito_e2e.fake_nodes (labels and nvidia.com/gpu capacity from kaito_presets) and created
# in one POST, because the API server keeps status only on create.
#
# Usage: hack/gpu-node.sh add --sku SKU --name NAME [--label k=v]... [--taint k=v:Effect]... [--no-wait]
#        hack/gpu-node.sh delete --name NAME
# Uses $KUBECONFIG if set, else the local cluster's admin kubeconfig; kubectl from the
# pinned tools cache (else PATH).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-dir.sh"
REPO_DIR="$(cd "$HACK_DIR/.." && pwd)"

usage() {
  sed -n '/^# Usage:/,/^# Uses/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
action=$1
shift
name="" wait=1 pass=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) name=${2:?--name needs a value}; pass+=("$1" "$2"); shift 2 ;;
    --sku | --label | --taint) pass+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --no-wait) wait=0; shift ;;
    *) echo "gpu-node: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n "$name" ]] || { echo "gpu-node: --name is required" >&2; exit 2; }

export KUBECONFIG="${KUBECONFIG:-$("$HACK_DIR/local-cluster.sh" kubeconfig)}"
KUBECTL="$TOOLS_BIN/kubectl"
[[ -x "$KUBECTL" ]] || KUBECTL=$(command -v kubectl) || { echo "gpu-node: no kubectl" >&2; exit 1; }

case $action in
  add)
    manifest=$(cd "$REPO_DIR" && uv run --frozen python -m kaito_e2e.fake_nodes manifest "${pass[@]}")
    "$KUBECTL" create -f - <<<"$manifest"
    if ((wait)); then
      "$KUBECTL" wait --for=condition=Ready "node/$name" --timeout=60s
      # The node lifecycle controller removes the not-ready taint shortly after Ready.
      for _ in $(seq 120); do
        taints=$("$KUBECTL" get node "$name" -o jsonpath='{.spec.taints[*].key}')
        [[ "$taints" != *node.kubernetes.io/not-ready* ]] && break
        sleep 0.5
      done
      "$KUBECTL" get node "$name" -o jsonpath='{.metadata.name} allocatable={.status.allocatable}{"\n"}'
    fi
    ;;
  delete)
    "$KUBECTL" delete node "$name" --ignore-not-found
    ;;
  *) usage ;;
esac
