#!/usr/bin/env bash
# Build the project's images (`make images`): the five package images, and the local cluster's
# pause, CoreDNS and curl images, with buildah on bases made from Debian packages and PyPI (no
# Docker engine or public registry needed). Unchanged images are not rebuilt (cache key: recipe +
# base images + every file the Dockerfile copies); see kaito_e2e/imagebuild.py.
#
#   hack/build-images.sh [NAME|GROUP ...] [--push] [--registry HOST:PORT]
#       NAME: controller provisioner inference-cpu tuning inference pause coredns curl ...
#       GROUP: product, infra, tools, base, all (default)
#       --push: push to the local cluster's registry (hack/local-cluster.sh info)
#   hack/build-images.sh --builder docker [--docker-registry REG] [--load-kind CLUSTER] [NAME...]
#       with a Docker engine: the product images on their public default bases
#   hack/build-images.sh --print-tag NAME
# Env: KAITO_IMAGES_CACHE (buildah storage, default ~/.cache/kaito-images), KAITO_PYTHON.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="${KAITO_PYTHON:-$root/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "build-images: $PY not found; run 'make install'" >&2; exit 2; }
cd "$root"
if [[ "${1:-}" == --print-tag ]]; then
  exec "$PY" -m kaito_e2e.imagebuild tag "${2:?--print-tag needs an image name}"
fi
exec "$PY" -m kaito_e2e.imagebuild build "$@"
