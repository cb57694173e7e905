#!/usr/bin/env bash
# Local run: install both charts on the local cluster and start the workspace controller and the
# KWOK gpu-provisioner as background processes, each with its chart's ServiceAccount token (KWOK
# runs no containers, so the charts' Deployments are installed with 0 replicas).
#
#   hack/dev-up.sh            idempotent: (re)installs the charts, restarts both processes
#   hack/dev-down.sh          stops them (the cluster keeps running; hack/local-cluster.sh down)
#
# Then:  eval "$(hack/local-cluster.sh env)"; kubectl apply -f examples/quickstart/phi-3-mini-inference.yaml
#        kubectl get workspace -w
#
# Env: KAITO_DEV_BACKEND (inference backend the workloads are configured with, default: unset =
#      vllm), KAITO_DEV_WEBHOOK_PORT (9443), KAITO_DEV_KWOK_DELAY (provisioner boot delay, 0),
#      KAITO_DEV_ADMIN=1 (run both processes as cluster admin instead of the charts' accounts).
# State, pids and logs: $KAITO_CLUSTER_DIR/dev (default ~/.local/share/kaito-local-cluster/dev).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
STATE="${KAITO_CLUSTER_DIR:-$HOME/.local/share/kaito-local-cluster}"
DEV="$STATE/dev"
WEBHOOK_PORT="${KAITO_DEV_WEBHOOK_PORT:-9443}"
CONTROLLER_NS=kaito-workspace
PROVISIONER_NS=gpu-provisioner
mkdir -p "$DEV"

log() { printf '[dev-up %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

bash hack/local-cluster.sh up >&2
ADMIN_KUBECONFIG=$(bash hack/local-cluster.sh kubeconfig)
BIN=$(bash hack/build-tools.sh --print-bin)
kc() { "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }
helm() { "$BIN/helm" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }

# Stop what a previous run started (only our own pid files).
bash hack/dev-down.sh >/dev/null 2>&1 || true

# CRDs first and always current (Helm installs crds/ only when absent); server-side, taking
# over fields another manager (e.g. kubectl in a test) may hold.
kc apply --server-side --force-conflicts -f charts/kaito-workspace/crds >&2
[[ -d charts/gpu-provisioner/crds ]] && kc apply --server-side --force-conflicts -f charts/gpu-provisioner/crds >&2
log "installing charts/kaito-workspace (replicaCount=0, webhook at https://127.0.0.1:$WEBHOOK_PORT)"
helm upgrade --install --skip-crds kaito-workspace charts/kaito-workspace -n "$CONTROLLER_NS" --create-namespace \
  --set replicaCount=0 --set cloudProvider=kwok --force-conflicts \
  --set webhook.url="https://127.0.0.1:$WEBHOOK_PORT" --wait --timeout 120s >&2

provisioner_sa=""
if [[ -d charts/gpu-provisioner/templates ]]; then
  log "installing charts/gpu-provisioner (provider=kwok, replicaCount=0)"
  helm upgrade --install --skip-crds gpu-provisioner charts/gpu-provisioner -n "$PROVISIONER_NS" --create-namespace \
    --set replicaCount=0 --set provider=kwok --force-conflicts --wait --timeout 120s >&2
  provisioner_sa=$(kc -n "$PROVISIONER_NS" get serviceaccount -l app.kubernetes.io/instance=gpu-provisioner \
    -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
fi

# kubeconfig NAME NAMESPACE SA: a kubeconfig that authenticates with the SA's token.
sa_kubeconfig() {
  local name=$1 ns=$2 sa=$3 out="$DEV/$1.kubeconfig" server ca token
  server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(kc -n "$ns" create token "$sa" --duration=24h)
  umask 077
  cat >"$out" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: $sa, user: {token: "$token"}}]
contexts: [{name: $name, context: {cluster: local, user: $sa, namespace: $ns}}]
current-context: $name
KC
  echo "$out"
}

if [[ "${KAITO_DEV_ADMIN:-0}" == 1 ]]; then
  controller_kc=$ADMIN_KUBECONFIG provisioner_kc=$ADMIN_KUBECONFIG
else
  controller_kc=$(sa_kubeconfig controller "$CONTROLLER_NS" kaito-workspace)
  if [[ -n "$provisioner_sa" ]]; then
    provisioner_kc=$(sa_kubeconfig provisioner "$PROVISIONER_NS" "$provisioner_sa")
  else
    log "gpu-provisioner chart has no templates yet: the provisioner runs as cluster admin"
    provisioner_kc=$ADMIN_KUBECONFIG
  fi
fi

# start NAME KUBECONFIG CMD...: a background process in its own session, pid and log in $DEV.
start() {
  local name=$1 kcfg=$2
  shift 2
  KUBECONFIG="$kcfg" setsid "$@" >"$DEV/$name.log" 2>&1 </dev/null &
  echo $! >"$DEV/$name.pid"
  log "$name: pid $(cat "$DEV/$name.pid"), log $DEV/$name.log"
}

export KAITO_CONTROLLER_RELEASE_NAMESPACE=$CONTROLLER_NS
export KAITO_CONTROLLER_CLOUD_PROVIDER=kwok
export KAITO_CONTROLLER_WEBHOOK_LISTEN_ADDRESS=127.0.0.1
export KAITO_CONTROLLER_WEBHOOK_PORT=$WEBHOOK_PORT
export KAITO_CONTROLLER_WEBHOOK_HOSTS='["127.0.0.1","localhost"]'
export KAITO_CONTROLLER_WEBHOOK_CERT_DIR=$DEV/webhook-certs
export KAITO_CONTROLLER_WEBHOOK_CERT_SECRET=kaito-workspace-webhook-cert
export KAITO_CONTROLLER_LOG_FORMAT=text
[[ -n "${KAITO_DEV_BACKEND:-}" ]] && export KAITO_CONTROLLER_INFERENCE_BACKEND=$KAITO_DEV_BACKEND
start controller "$controller_kc" "$root/.venv/bin/kaito-controller" --health-address 127.0.0.1:8091

export KAITO_PROVISIONER_PROVIDER=kwok
export KAITO_PROVISIONER_KWOK_DELAY_SECONDS=${KAITO_DEV_KWOK_DELAY:-0}
export KAITO_PROVISIONER_HEALTH_PORT=8092
start provisioner "$provisioner_kc" "$root/.venv/bin/gpu-provisioner"

# Ready when both liveness endpoints answer and the webhook's CA is published.
for _ in $(seq 60); do
  if curl -fsS http://127.0.0.1:8091/healthz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:8092/healthz >/dev/null 2>&1; then
    log "ready. KUBECONFIG=$ADMIN_KUBECONFIG; logs: $DEV/controller.log $DEV/provisioner.log"
    echo "$DEV"
    exit 0
  fi
  for name in controller provisioner; do
    kill -0 "$(cat "$DEV/$name.pid")" 2>/dev/null || { log "$name exited; tail of $DEV/$name.log:"; tail -20 "$DEV/$name.log" >&2; exit 1; }
  done
  sleep 1
done
log "timed out waiting for the health endpoints; see $DEV/*.log"
exit 1
