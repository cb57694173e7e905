#!/usr/bin/env bash
# The README's first command (`make quickstart`): from a fresh machine to the Phi-3 quick start
# answering from real pods. Installs what the host needs (Debian packages, uv, the locked
# workspace), builds the pinned Kubernetes tools and the images (both cached), starts the local
# cluster with real nodes, installs both charts as pods, then runs the quick start as written,
# ending with its `kubectl run curl ... /chat` answer and an OpenAI answer.
#
#   hack/quickstart.sh up     # idempotent: reuses whatever is already built or running
#   hack/quickstart.sh down   # stops the cluster (nodes, pods, control plane); state is kept
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.local/bin:$PATH"
t0=$SECONDS
say() { printf '\n\033[1m[quickstart %4ss] %s\033[0m\n' "$((SECONDS - t0))" "$*"; }

up() {
  say "host packages (containerd, runc, CNI plugins, buildah, registry, ...)"
  bash hack/install-host-deps.sh
  if ! command -v uv >/dev/null 2>&1; then
    say "installing uv (pip)"
    python3 -m pip install --quiet uv
  fi
  say "syncing the Python workspace from uv.lock"
  make --no-print-directory install

  say "starting the local cluster (builds the pinned Kubernetes tools once: ~12 min cold on 2 cores)"
  bash hack/local-cluster.sh up
  eval "$(bash hack/local-cluster.sh env)"

  say "building the images (cached by content) and installing both charts as pods"
  uv run --frozen python -m kaito_e2e.deploy up

  say "the Phi-3 quick start: Workspace, then /chat from a pod and an OpenAI completion"
  uv run --frozen python hack/quickstart.py
  say "done in $((SECONDS - t0))s; the cluster keeps running"
  cat <<EOF
Next:
  eval "\$(hack/local-cluster.sh env)"     # kubectl and helm on PATH, KUBECONFIG set
  kubectl get pods -A -o wide                # controller, provisioner, CoreDNS, the inference pod
  kubectl get workspace,nodeclaims,nodes
  make quickstart-down                       # stop everything (hack/local-cluster.sh reset wipes it)
EOF
}

down() {
  bash hack/local-cluster.sh down
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
