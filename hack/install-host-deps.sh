#!/usr/bin/env bash
# Install the Debian packages the local cluster and the image builds need, if any is missing.
#
# Why: real nodes need containerd, runc, the CNI plugins, iptables and conntrack; images are
# built with buildah (mmdebstrap makes the Debian base, skopeo reads pushed labels); the cluster's
# registry is Debian's docker-registry (htpasswd from apache2-utils); openssl makes the PKI; gcc
# compiles the pause program. All come from Debian's archive, no other registry is needed.
# Idempotent: nothing is installed when everything is present. Needs root (apt-get).
set -euo pipefail

# command-or-path package
wanted=(
  "containerd containerd"
  "runc runc"
  "/usr/lib/cni/bridge containernetworking-plugins"
  "iptables iptables"
  "conntrack conntrack"
  "nsenter util-linux"
  "ip iproute2"
  "buildah buildah"
  "mmdebstrap mmdebstrap"
  "skopeo skopeo"
  "/usr/bin/docker-registry docker-registry"
  "htpasswd apache2-utils"
  "openssl openssl"
  "curl curl"
  "envsubst gettext-base"
  "gcc gcc"
  "/usr/lib/x86_64-linux-gnu/libc.a libc6-dev"
)
missing=()
for entry in "${wanted[@]}"; do
  read -r probe package <<<"$entry"
  if [[ "$probe" == /* ]]; then
    [[ -e "$probe" ]] || missing+=("$package")
  else
    command -v "$probe" >/dev/null 2>&1 || missing+=("$package")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "[host-deps] all present" >&2
  exit 0
fi
[[ $EUID -eq 0 ]] || { echo "[host-deps] need root to install: ${missing[*]}" >&2; exit 1; }
echo "[host-deps] apt-get install ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The distribution's containerd service is not ours: nodes run their own containerd.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
