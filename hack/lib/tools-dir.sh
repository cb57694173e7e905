# shellcheck shell=bash
# Sourced by hack/*.sh: where the pinned toolchain lives.
# Sets HACK_DIR, the pins from versions.env, TOOLS_KEY, TOOLS_DIR and TOOLS_BIN.
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../versions.env
source "$HACK_DIR/versions.env"
# The key is the content hash of versions.env, so any pin change gives a new cache dir.
TOOLS_KEY="k8s-${K8S_VERSION}-$(sha256sum "$HACK_DIR/versions.env" | cut -c1-12)"
TOOLS_DIR="${KAITO_TOOLS_CACHE:-$HOME/.cache/kaito-tools}/$TOOLS_KEY"
TOOLS_BIN="$TOOLS_DIR/bin"
# Every binary the local cluster and the e2e suite need.
TOOLS_REQUIRED=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok helm coredns oras)
