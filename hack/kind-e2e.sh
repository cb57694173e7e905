#!/usr/bin/env bash
# `make kind-e2e`: the whole story with real pods, for machines with Docker.
#
# A kind cluster (one control plane, one worker) gets the images built from this checkout, fake
# GPU capacity and GPU labels on the worker (a node-status patch: nothing runs on a GPU), both
# charts installed as real Deployments, the Phi-3 quick start served by the CPU inference image
# (transformers backend) and answered over the Service, then the e2e suite against the cluster
# (KAITO_E2E_KUBECONFIG). CI cannot run this (no Docker there): keep it correct by reading,
# `bash -n` and shellcheck.
#
# Usage: hack/kind-e2e.sh [all|up|smoke|test|down] [-- PYTEST_ARGS...]
#   all    (default) up, smoke, test
#   up     cluster, images, fake GPUs, charts (idempotent: reuses the cluster and images)
#   smoke  apply examples/quickstart/phi-3-mini-inference.yaml, wait for WorkspaceReady, POST /chat
#   test   uv run pytest -m e2e e2e (or PYTEST_ARGS) with KAITO_E2E_KUBECONFIG set, a kwok
#          process for the suite's fake nodes, and the chart's provisioner scaled to 0
#   down   delete the kind cluster
#
# Nodes: the workspace controller runs in bring-your-own-nodes mode (nodeAutoProvisioning=false)
# and the worker carries the quick start's label (apps=phi-3), because pods can only run on the
# real kind nodes. The gpu-provisioner chart is installed too (kwok provider, real pod) so its
# Deployment and RBAC are exercised, but nothing asks it for nodes in this mode.
#
# Env:
#   KAITO_KIND_CLUSTER   cluster name (default kaito-e2e)
#   KAITO_KIND_SKU       SKU the worker pretends to be (default Standard_NC6s_v3, the quick start's)
#   KAITO_KIND_BACKEND   inference backend of the workloads (transformers or fake); default:
#                        transformers on the CPU image's tiny model when the chart can point
#                        workloads at it (workload.modelOverride), else fake, saying why
#   KAITO_KIND_MODEL     the tiny model's path in the CPU image (default /opt/kaito/tiny-model)
#   KAITO_IMAGE_REGISTRY image names, as hack/build-images.sh (default ghcr.io/kaito-py)
#   KAITO_KIND_SKIP_BUILD=1  reuse the images already loaded into the cluster
# Pins: hack/kind.env (kind and its node image); kubectl and helm from hack/versions.env
# (hack/build-tools.sh). Needs Docker, Go >= 1.26 (to install kind and the tools) and uv.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/kind.env
source "$root/hack/kind.env"
CLUSTER="${KAITO_KIND_CLUSTER:-kaito-e2e}"
SKU="${KAITO_KIND_SKU:-Standard_NC6s_v3}"
REGISTRY="${KAITO_IMAGE_REGISTRY:-ghcr.io/kaito-py}"
CACHE="${KAITO_TOOLS_CACHE:-$HOME/.cache/kaito-tools}"
KIND_BIN_DIR="$CACHE/kind-$KIND_VERSION/bin"
STATE="${KAITO_KIND_DIR:-$HOME/.local/share/kaito-kind}/$CLUSTER"
KUBECONFIG_FILE="$STATE/kubeconfig"
WORKSPACE_NS=kaito-workspace
PROVISIONER_NS=gpu-provisioner
# The controller runs without node auto-provisioning (bring your own nodes), where
# resource.instanceType must be empty: the quick start as written, without that line.
QUICKSTART_SOURCE=examples/quickstart/phi-3-mini-inference.yaml
QUICKSTART="$STATE/phi-3-mini-inference-byo.yaml"
QUICKSTART_NAME=workspace-phi-3-mini
QUICKSTART_PRESET_ID=microsoft/Phi-3-mini-4k-instruct
TINY_MODEL="${KAITO_KIND_MODEL:-/opt/kaito/tiny-model}" # baked by packages/inference-server/Dockerfile.cpu
t0=$SECONDS

say() { printf '\n\033[1m[kind-e2e %4ss] %s\033[0m\n' "$((SECONDS - t0))" "$*" >&2; }
die() { printf 'kind-e2e: error: %s\n' "$1" >&2; exit "${2:-1}"; }

version_of() { # the image tag of a package: its pyproject version (as hack/build-images.sh)
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$root/packages/$1/pyproject.toml"
}

need_docker() {
  command -v docker >/dev/null 2>&1 || die "docker not found: kind needs Docker (or set up podman's docker shim)" 2
  docker info >/dev/null 2>&1 || die "docker is installed but its engine does not answer (docker info failed)" 2
}

ensure_tools() {
  command -v go >/dev/null 2>&1 || die "go not found: Go >= 1.26 installs kind and builds kubectl/helm" 2
  command -v uv >/dev/null 2>&1 || die "uv not found: run 'make install' first" 2
  if [[ ! -x "$KIND_BIN_DIR/kind" ]]; then
    say "installing kind $KIND_VERSION into $KIND_BIN_DIR"
    mkdir -p "$KIND_BIN_DIR"
    GOBIN="$KIND_BIN_DIR" go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
  # kubectl, helm and kwok at the pins (hack/versions.env), built once. Only when missing: the
  # cached path re-checks versions through `cmd | grep -q` pipes, which can die of SIGPIPE
  # (exit 141) under pipefail.
  TOOLS_BIN=$(bash hack/build-tools.sh --print-bin)
  local tool
  for tool in kubectl helm kwok; do
    [[ -x "$TOOLS_BIN/$tool" ]] || { bash hack/build-tools.sh >&2; break; }
  done
  # kind first: hack/build-images.sh --load-kind calls `kind` from PATH.
  export PATH="$KIND_BIN_DIR:$TOOLS_BIN:$PATH"
  export KUBECONFIG="$KUBECONFIG_FILE"
}

# grep without -q reads all of its input, so kind never dies of SIGPIPE under pipefail.
kind_cluster_exists() { kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null; }

create_cluster() {
  mkdir -p "$STATE"
  if kind_cluster_exists; then
    say "reusing kind cluster $CLUSTER"
  else
    say "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE): one control plane, one worker"
    cat >"$STATE/kind-config.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
EOF
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
      --config "$STATE/kind-config.yaml" --wait 180s
  fi
  kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
  chmod 600 "$KUBECONFIG_FILE"
  kubectl wait --for=condition=Ready nodes --all --timeout=180s >&2
}

check_dockerfiles() { # every image this run deploys must be buildable from this checkout
  local missing=() f
  for f in packages/kaito-controller/Dockerfile packages/gpu-provisioner/Dockerfile \
    packages/inference-server/Dockerfile.cpu; do
    [[ -f "$f" ]] || missing+=("$f")
  done
  ((${#missing[@]} == 0)) || die "cannot build the images this run deploys, missing: ${missing[*]}" 2
}

build_images() {
  if [[ "${KAITO_KIND_SKIP_BUILD:-}" == 1 ]]; then
    say "KAITO_KIND_SKIP_BUILD=1: using the images already loaded into $CLUSTER"
    return
  fi
  check_dockerfiles
  say "building the controller, provisioner and CPU inference images and loading them into $CLUSTER"
  # Only what this run deploys: the CUDA inference and tuning images are large and unused here.
  bash hack/build-images.sh --registry "$REGISTRY" --load-kind "$CLUSTER" \
    packages/kaito-controller packages/gpu-provisioner
  # build-images.sh selects by package directory, which would also build the CUDA image of
  # the inference server: the CPU one is built here with the same tag convention.
  local cpu_image
  cpu_image="$REGISTRY/kaito-inference-cpu:$(version_of inference-server)"
  docker build -f packages/inference-server/Dockerfile.cpu -t "$cpu_image" "$root"
  kind load docker-image "$cpu_image" --name "$CLUSTER"
}

# The backend the workloads run. The CPU image bakes the tiny model at $TINY_MODEL
# (packages/inference-server/Dockerfile.cpu), but the controller runs `--model <the preset's
# Hugging Face id>`. transformers serves the tiny model when the chart can point workloads at a
# local model (a `workload.modelOverride` value), or when the image caches a model under the
# preset's id; otherwise the real weights would be downloaded, so the fake (echo) backend is used.
choose_backend() {
  local image
  image="$REGISTRY/kaito-inference-cpu:$(version_of inference-server)"
  MODEL_OVERRIDE=""
  if uv run --frozen python -c "
import sys, yaml
values = yaml.safe_load(open('charts/kaito-workspace/values.yaml'))
sys.exit(0 if 'modelOverride' in (values.get('workload') or {}) else 1)
" 2>/dev/null; then
    MODEL_OVERRIDE="$TINY_MODEL"
  fi
  if [[ -n "${KAITO_KIND_BACKEND:-}" ]]; then
    BACKEND="$KAITO_KIND_BACKEND"
  elif [[ -n "$MODEL_OVERRIDE" ]]; then
    BACKEND=transformers
  elif docker run --rm --entrypoint python "$image" -c "
import sys
from huggingface_hub import try_to_load_from_cache
sys.exit(0 if isinstance(try_to_load_from_cache('$QUICKSTART_PRESET_ID', 'config.json'), str) else 1)
" >/dev/null 2>&1; then
    BACKEND=transformers
  else
    BACKEND=fake
    say "WARNING: serving the quick start with the fake (echo) backend, not the tiny model"
    echo "The controller runs '--model $QUICKSTART_PRESET_ID' and the chart has no" >&2
    echo "workload.modelOverride to point it at $TINY_MODEL in $image, so the" >&2
    echo "transformers backend would download the real weights. KAITO_KIND_BACKEND=transformers insists." >&2
  fi
}

fake_gpus() {
  local worker
  worker=$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' \
    -o jsonpath='{.items[0].metadata.name}')
  [[ -n "$worker" ]] || die "no worker node in $CLUSTER"
  say "faking $SKU on $worker: GPU labels, nvidia.com/gpu capacity, label apps=phi-3"
  # The kubelet keeps extended resources it does not manage, so one status patch is enough.
  uv run --frozen python - "$KUBECONFIG_FILE" "$SKU" "$worker" <<'PY'
import sys

from kaito_e2e.fake_nodes import shape_for_sku
from kaito_e2e.kind import patch_fake_gpus
from kubernetes import client, config

kubeconfig, sku, worker = sys.argv[1:4]
core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
patch_fake_gpus(core, shape_for_sku(sku), [worker])
node = core.read_node(worker)
print(worker, "allocatable nvidia.com/gpu =", node.status.allocatable.get("nvidia.com/gpu"))
PY
  kubectl label node "$worker" apps=phi-3 --overwrite >&2
}

byo_quickstart() {
  mkdir -p "$STATE"
  grep -v '^  instanceType:' "$QUICKSTART_SOURCE" >"$QUICKSTART"
}

install_charts() {
  byo_quickstart
  local controller_tag provisioner_tag inference_tag
  controller_tag=$(version_of kaito-controller)
  provisioner_tag=$(version_of gpu-provisioner)
  inference_tag=$(version_of inference-server)
  say "installing the CRDs and both charts (controller: bring-your-own nodes, backend $BACKEND)"
  kubectl apply --server-side --force-conflicts -f charts/kaito-workspace/crds >&2
  kubectl apply --server-side --force-conflicts -f charts/gpu-provisioner/crds >&2
  helm upgrade --install gpu-provisioner charts/gpu-provisioner --skip-crds \
    -n "$PROVISIONER_NS" --create-namespace \
    --set provider=kwok \
    --set image.repository="$REGISTRY/gpu-provisioner" --set image.tag="$provisioner_tag" \
    --wait --timeout 180s >&2
  helm upgrade --install kaito-workspace charts/kaito-workspace --skip-crds \
    -n "$WORKSPACE_NS" --create-namespace \
    --set replicaCount=1 \
    --set nodeAutoProvisioning=false \
    --set image.repository="$REGISTRY/kaito-controller" --set image.tag="$controller_tag" \
    --set workload.inferenceImage="$REGISTRY/kaito-inference-cpu:$inference_tag" \
    --set workload.inferenceBackend="$BACKEND" \
    ${MODEL_OVERRIDE:+--set workload.modelOverride="$MODEL_OVERRIDE"} \
    --wait --timeout 180s >&2
  # The webhook is served once the controller has published its CA bundle: a server-side dry
  # run of the quick start must pass it (failurePolicy Fail refuses while it is not served).
  local _
  for _ in $(seq 1 30); do
    kubectl create --dry-run=server -f "$QUICKSTART" >/dev/null 2>&1 && return
    sleep 2
  done
  kubectl create --dry-run=server -f "$QUICKSTART" || true # show the error
  die "the workspace webhook is not served after 60s: kubectl -n $WORKSPACE_NS logs deploy/kaito-workspace"
}

up() {
  need_docker
  ensure_tools
  create_cluster
  build_images
  choose_backend
  fake_gpus
  install_charts
  say "cluster ready: export KUBECONFIG=$KUBECONFIG_FILE"
}

smoke() {
  ensure_tools
  byo_quickstart
  local image
  image="$REGISTRY/kaito-inference-cpu:$(version_of inference-server)"
  say "applying $QUICKSTART and waiting for WorkspaceReady (real pod, CPU image)"
  kubectl apply -f "$QUICKSTART" >&2
  if ! kubectl wait --for=condition=WorkspaceReady "workspace/$QUICKSTART_NAME" --timeout=900s >&2; then
    kubectl describe workspace "$QUICKSTART_NAME" >&2 || true
    kubectl get pods -l "kaito.sh/workspace=$QUICKSTART_NAME" -o wide >&2 || true
    die "$QUICKSTART_NAME did not become ready"
  fi
  kubectl get workspace "$QUICKSTART_NAME" >&2
  say "POST /chat through the Service, from a pod (the quick start's curl, with the CPU image's python)"
  kubectl delete pod kaito-e2e-chat --ignore-not-found >&2
  kubectl run kaito-e2e-chat --rm -i --restart=Never --image="$image" \
    --image-pull-policy=IfNotPresent --command -- python -c "
import json, urllib.request
req = urllib.request.Request('http://$QUICKSTART_NAME/chat', method='POST',
    data=json.dumps({'prompt': 'What is Kubernetes?', 'max_new_tokens': 16}).encode(),
    headers={'Content-Type': 'application/json'})
body = json.load(urllib.request.urlopen(req, timeout=120))
assert 'Result' in body, body
print('chat answered:', body)
"
  kubectl delete -f "$QUICKSTART" --wait=true --timeout=120s >&2
}

run_tests() {
  ensure_tools
  # The provisioner suites run their own gpu-provisioner process against NodeClaims they
  # create; the chart's pod (already shown to start, in `up`) would race them for the same
  # NodeClaims, so it is scaled to 0 for the suite.
  kubectl -n "$PROVISIONER_NS" scale deploy/gpu-provisioner --replicas=0 >&2
  # add_gpu_node (e2e/conftest.py) creates KWOK nodes: a kwok process from the pinned tools
  # manages them, and only them (annotation selector), as kaito_e2e.kind.start_kwok does.
  "$TOOLS_BIN/kwok" --kubeconfig="$KUBECONFIG_FILE" --config="$(dirname "$TOOLS_BIN")/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --cidr=10.250.0.0/16 >>"$STATE/kwok.log" 2>&1 &
  local kwok_pid=$!
  # shellcheck disable=SC2064 # expand now: the pid of this kwok
  trap "kill $kwok_pid 2>/dev/null || true" EXIT
  say "e2e suite against $CLUSTER (KAITO_E2E_KUBECONFIG=$KUBECONFIG_FILE, kwok log $STATE/kwok.log)"
  local args=("$@")
  ((${#args[@]})) || args=(-m e2e e2e)
  KAITO_E2E_KUBECONFIG="$KUBECONFIG_FILE" uv run --frozen pytest "${args[@]}"
}

down() {
  export PATH="$KIND_BIN_DIR:$PATH"
  command -v kind >/dev/null 2>&1 || die "kind not found in $KIND_BIN_DIR or PATH" 2
  if kind_cluster_exists; then
    say "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER"
  fi
  rm -rf "$STATE"
}

cmd="${1:-all}"
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
case "$cmd" in
  all) up; smoke; run_tests "$@" ;;
  up) up ;;
  smoke) smoke ;;
  test) run_tests "$@" ;;
  down) down ;;
  -h | --help | help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac
