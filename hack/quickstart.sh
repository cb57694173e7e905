#!/usr/bin/env bash
# The README's first command (`make quickstart`): from a fresh machine to a ready Phi-3 Workspace
# on a local cluster with fake GPU nodes, and two answers from the inference server running the
# controller's own command line on a tiny CPU model.
#
#   hack/quickstart.sh up     # idempotent: reuses whatever is already running
#   hack/quickstart.sh down   # stops the inference server, controller, provisioner and cluster
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.local/bin:$PATH"
t0=$SECONDS
say() { printf '\n\033[1m[quickstart %4ss] %s\033[0m\n' "$((SECONDS - t0))" "$*"; }

up() {
  if ! command -v uv >/dev/null 2>&1; then
    say "installing uv (pip --user)"
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  fi
  say "syncing the Python workspace from uv.lock"
  make --no-print-directory install

  say "starting the local cluster (builds the pinned Kubernetes tools once, ~7-10 min cold)"
  bash hack/local-cluster.sh up
  eval "$(bash hack/local-cluster.sh env)"

  say "installing the charts and starting the controller and the KWOK provisioner"
  echo "KWOK nodes run no containers, so the workspace controller and the gpu-provisioner run as"
  echo "local processes, authenticated with their charts' ServiceAccount tokens (not as admin)."
  # A few seconds of fake node boot time, so the progress display shows the phases a real
  # cluster goes through (nodes first, then the inference workload).
  KAITO_DEV_KWOK_DELAY="${KAITO_DEV_KWOK_DELAY:-5}" bash hack/dev-up.sh

  say "applying the Phi-3 quick-start Workspace and serving it on a tiny CPU model"
  uv run --frozen python hack/quickstart.py up
  say "done in $((SECONDS - t0))s; the cluster, controller and provisioner keep running"
  cat <<EOF
Next:
  eval "\$(hack/local-cluster.sh env)"     # kubectl and helm on PATH, KUBECONFIG set
  kubectl get workspace                      # or: kubectl apply -f examples/...
  make quickstart-down                       # stop everything
EOF
}

down() {
  uv run --frozen python hack/quickstart.py down || true
  [ -x hack/dev-down.sh ] && bash hack/dev-down.sh || true
  bash hack/local-cluster.sh down
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
