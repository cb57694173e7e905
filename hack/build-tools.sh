#!/usr/bin/env bash
# Build the pinned local-cluster toolchain from Go modules, once.
#
# Why: CI has no Docker and no package ships kube-apiserver, so we compile the
# control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl),
# the node agents (kubelet, kube-proxy), etcd, kwok, helm, CoreDNS (cluster DNS) and the oras
# CLI (adapter pulls) at the versions in hack/versions.env; the last two run in pods, from
# images hack/build-images.sh builds around these binaries. It also builds Karpenter's kwok
# provider (the upstream provisioner e2e/tests/test_karpenter_kwok.py swaps in) as
# bin/karpenter-kwok, with its CRDs copied from the Go module into <key>/karpenter-crds/.
# Binaries go to
# ${KAITO_TOOLS_CACHE:-~/.cache/kaito-tools}/<key>/bin (key = hash of versions.env);
# a tool whose binary is present and reports the pinned version is not rebuilt.
# Throwaway Go modules live in <key>/src, never in the repo.
#
# Usage: hack/build-tools.sh [--print-bin]
#   --print-bin  only print the bin directory (no build)
# Env: KAITO_TOOLS_CACHE, BUILD_JOBS (go build -p, default 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-dir.sh"

if [[ "${1:-}" == "--print-bin" ]]; then
  echo "$TOOLS_BIN"
  exit 0
fi
STEP=""
if [[ "${1:-}" == "--step" ]]; then # internal: run one build step (see timed)
  STEP=${2:?--step needs a name}
fi

if ! command -v go >/dev/null; then
  echo "build-tools: 'go' not found; Go >= 1.26 and the Go module proxy are required" >&2
  exit 2
fi

# Karpenter's kwok provider. Pinned here, not in versions.env, whose hash keys the whole cache:
# adding it must not rebuild the Kubernetes toolchain. v1.14.1 is the newest tag that builds
# with Go 1.26 (v1.14.3 and v1.15.0 ask for a newer toolchain); its CI covers Kubernetes
# 1.30-1.36. Cached like the others: present and `go version -m` naming this version.
KARPENTER_VERSION=v1.14.1

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -modcacherw"
JOBS="${BUILD_JOBS:-2}"
SRC="$TOOLS_DIR/src"
mkdir -p "$TOOLS_BIN" "$SRC"


log() { printf '[build-tools %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# timed NAME STEP: run build_STEP in a child of this script; print its wall time
# and (with GNU time) the peak RSS of its largest process.
timed() {
  local name=$1 step=$2 start=$SECONDS
  log "$name: start"
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f "[build-tools] $name: peak RSS %M KiB, user %Us, sys %Ss" \
      bash "${BASH_SOURCE[0]}" --step "$step"
  else
    bash "${BASH_SOURCE[0]}" --step "$step"
  fi
  log "$name: done in $((SECONDS - start))s"
}

# version_ok BIN EXPECTED CMD...: true when BIN exists and CMD's output contains EXPECTED.
version_ok() {
  local bin=$1 want=$2
  shift 2
  [[ -x "$TOOLS_BIN/$bin" ]] && "$@" 2>/dev/null | grep -F -- "$want" >/dev/null
}

# karpenter_ok: the Karpenter kwok binary was built from the pinned module version (it has no
# --version flag; the Go build info names its module). karpenter_crds_ok: its five CRDs copied.
KARPENTER_CRDS=(karpenter.sh_nodepools karpenter.sh_nodeclaims karpenter.sh_nodeoverlays
  autoscaling.x-k8s.io_capacitybuffers karpenter.kwok.sh_kwoknodeclasses)
karpenter_ok() {
  [[ -x "$TOOLS_BIN/karpenter-kwok" ]] &&
    go version -m "$TOOLS_BIN/karpenter-kwok" 2>/dev/null |
    awk -v v="$KARPENTER_VERSION" '$1 == "mod" && $2 == "sigs.k8s.io/karpenter" && $3 == v {f = 1} END {exit !f}'
}
karpenter_crds_ok() {
  local c
  for c in "${KARPENTER_CRDS[@]}"; do [[ -s "$TOOLS_DIR/karpenter-crds/$c.yaml" ]] || return 1; done
}

# modinfo MODULE@VERSION FIELD: a field of `go mod download -json`.
modinfo() {
  go mod download -json "$1" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d$2)"
}

build_kubernetes() {
  local mod="$SRC/k8s" staging_version="v0.${K8S_VERSION#v1.}" minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  local gomod commit staging godebug
  gomod=$(modinfo "k8s.io/kubernetes@$K8S_VERSION" '["GoMod"]')
  commit=$(modinfo "k8s.io/kubernetes@$K8S_VERSION" '.get("Origin",{}).get("Hash","")')
  # Staging modules are exactly the `replace X => ./staging/...` lines of kubernetes' go.mod.
  staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  godebug=$(awk '$1 == "godebug" && NF == 2 {print $2}' "$gomod")
  [[ -n "$staging" ]] || { log "no staging modules found in $gomod"; return 1; }
  go mod init kaito.invalid/k8s-tools >/dev/null 2>&1
  local m
  for m in $staging; do go mod edit "-replace=${m}=${m}@${staging_version}"; done
  [[ -z "$godebug" ]] || go mod edit "-godebug=$godebug"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy) pkgs=() c
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go get "${pkgs[@]/%/@$K8S_VERSION}"
  local ld="-s -w" pkg date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  local out="$mod/out"
  mkdir -p "$out"
  go build -p "$JOBS" -trimpath -tags selinux,notest -ldflags "$ld" -o "$out/" "${pkgs[@]}"
  mv "$out"/* "$TOOLS_BIN/"
}

build_etcd() {
  local mod="$SRC/etcd"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init kaito.invalid/etcd-tools >/dev/null 2>&1
  # etcd's own go.mod has replace directives, so `go install` refuses it; as a
  # dependency of a throwaway module its real require lines are used.
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION"
  go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$mod/etcd" go.etcd.io/etcd/server/v3
  go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$mod/etcdctl" go.etcd.io/etcd/etcdctl/v3
  mv "$mod/etcd" "$mod/etcdctl" "$TOOLS_BIN/"
}

build_kwok() {
  GOBIN="$TOOLS_BIN" go install -p "$JOBS" -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok refuses to start without Stage objects: assemble node + pod stages from
  # the kwok module source in the Go module cache (not copied into the repo).
  local dir f
  dir=$(modinfo "sigs.k8s.io/kwok@$KWOK_VERSION" '["Dir"]')
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo '---'
      cat "$dir/kustomize/stage/$f"
    done
  } >"$TOOLS_DIR/kwok-stages.yaml.tmp"
  mv "$TOOLS_DIR/kwok-stages.yaml.tmp" "$TOOLS_DIR/kwok-stages.yaml"
}

build_karpenter() {
  # `go install` would name the binary `kwok`, the name of the kwok tool itself: build into a
  # scratch GOBIN and rename.
  local gobin="$SRC/karpenter-bin"
  rm -rf "$gobin" && mkdir -p "$gobin"
  GOBIN="$gobin" go install -p "$JOBS" -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION"
  mv "$gobin/kwok" "$TOOLS_BIN/karpenter-kwok"
  rm -rf "$gobin"
}

# copy_karpenter_crds: NodePool, NodeClaim, NodeOverlay, CapacityBuffer and KWOKNodeClass, as the
# provider's chart ships them, from the Go module cache (not copied into the repo). The chart's
# KWOKNodeClass CRD is a symlink into kwok/apis/crds, and module zips drop symlinks.
copy_karpenter_crds() {
  local dir crds="$TOOLS_DIR/karpenter-crds"
  dir=$(modinfo "sigs.k8s.io/karpenter@$KARPENTER_VERSION" '["Dir"]')
  rm -rf "$crds.tmp" && mkdir -p "$crds.tmp"
  cp "$dir"/kwok/charts/crds/*.yaml "$dir"/kwok/apis/crds/*.yaml "$crds.tmp/"
  chmod u+w "$crds.tmp"/*.yaml
  rm -rf "$crds" && mv "$crds.tmp" "$crds"
}

build_coredns() {
  # CoreDNS's go.mod has no replace directives, so `go install` builds it as published.
  GOBIN="$TOOLS_BIN" go install -p "$JOBS" -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_oras() {
  GOBIN="$TOOLS_BIN" go install -p "$JOBS" -trimpath \
    -ldflags "-s -w -X oras.land/oras/internal/version.Version=${ORAS_VERSION#v} -X oras.land/oras/internal/version.BuildMetadata=" \
    "oras.land/oras/cmd/oras@$ORAS_VERSION"
}

build_helm() {
  local major=${HELM_VERSION%%.*}
  GOBIN="$TOOLS_BIN" go install -p "$JOBS" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
}

# main runs from the last line, so bash has parsed the whole file before the long build.
main() {
  if [[ -n "$STEP" ]]; then
    "build_$STEP"
    return
  fi
  # One build at a time per cache key (local-cluster.sh and CI may both call us).
  exec 9>"$TOOLS_DIR/.build.lock"
  flock 9

  local total_start=$SECONDS
  log "go: $(go version); cache: $TOOLS_DIR"
  if version_ok kube-apiserver "Kubernetes $K8S_VERSION" "$TOOLS_BIN/kube-apiserver" --version &&
    [[ -x "$TOOLS_BIN/kube-controller-manager" && -x "$TOOLS_BIN/kube-scheduler" && -x "$TOOLS_BIN/kubectl" ]] &&
    [[ -x "$TOOLS_BIN/kubelet" && -x "$TOOLS_BIN/kube-proxy" ]]; then
    log "kubernetes $K8S_VERSION: cached"
  else
    timed "kubernetes $K8S_VERSION (apiserver, controller-manager, scheduler, kubectl, kubelet, kube-proxy)" kubernetes
  fi
  if version_ok etcd "etcd Version: ${ETCD_VERSION#v}" "$TOOLS_BIN/etcd" --version; then
    log "etcd $ETCD_VERSION: cached"
  else
    timed "etcd $ETCD_VERSION" etcd
  fi
  if version_ok kwok "$KWOK_VERSION" "$TOOLS_BIN/kwok" --version && [[ -s "$TOOLS_DIR/kwok-stages.yaml" ]]; then
    log "kwok $KWOK_VERSION: cached"
  else
    timed "kwok $KWOK_VERSION" kwok
  fi
  if karpenter_ok; then
    log "karpenter kwok provider $KARPENTER_VERSION: cached"
  else
    timed "karpenter kwok provider $KARPENTER_VERSION" karpenter
  fi
  karpenter_crds_ok || copy_karpenter_crds
  if version_ok coredns "CoreDNS-${COREDNS_VERSION#v}" "$TOOLS_BIN/coredns" -version; then
    log "coredns $COREDNS_VERSION: cached"
  else
    timed "coredns $COREDNS_VERSION" coredns
  fi
  if version_ok oras "${ORAS_VERSION#v}" "$TOOLS_BIN/oras" version; then
    log "oras $ORAS_VERSION: cached"
  else
    timed "oras $ORAS_VERSION" oras
  fi
  if version_ok helm "$HELM_VERSION" "$TOOLS_BIN/helm" version --template '{{.Version}}'; then
    log "helm $HELM_VERSION: cached"
  else
    timed "helm $HELM_VERSION" helm
  fi

  # Final check: every binary reports the pinned version (helm's kubeVersion checks read them).
  "$TOOLS_BIN/kube-apiserver" --version | grep -F "Kubernetes $K8S_VERSION" >/dev/null
  "$TOOLS_BIN/kubectl" version --client | grep -F "Client Version: $K8S_VERSION" >/dev/null
  "$TOOLS_BIN/kubelet" --version | grep -F "Kubernetes $K8S_VERSION" >/dev/null
  "$TOOLS_BIN/kube-proxy" --version | grep -F "Kubernetes $K8S_VERSION" >/dev/null
  "$TOOLS_BIN/coredns" -version | grep -F "CoreDNS-${COREDNS_VERSION#v}" >/dev/null
  "$TOOLS_BIN/oras" version | grep -F "${ORAS_VERSION#v}" >/dev/null
  "$TOOLS_BIN/etcd" --version | grep -F "etcd Version: ${ETCD_VERSION#v}" >/dev/null
  "$TOOLS_BIN/helm" version --template '{{.Version}}' | grep -xF "$HELM_VERSION" >/dev/null
  karpenter_ok && karpenter_crds_ok
  log "all tools ready in $((SECONDS - total_start))s: $TOOLS_BIN"
  echo "$TOOLS_BIN"
}

main "$@"; exit
