#!/usr/bin/env bash
# Build every package's image with whatever OCI builder this machine has (docker, podman or
# buildah). Tags follow each package's own version, which is also the charts' default image tag
# (checked by e2e/tests/unit/test_image_tags.py).
#
#   hack/build-images.sh [--registry REG] [--load-kind CLUSTER] [PACKAGE_DIR...]
#
# Without arguments it builds all images. The build context is the repository root, as the
# Dockerfiles copy the workspace's pyproject files and uv.lock first (house style 8.2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
registry="${KAITO_IMAGE_REGISTRY:-ghcr.io/kaito-py}"
kind_cluster=""
packages=()
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry="$2"; shift 2 ;;
    --load-kind) kind_cluster="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) packages+=("$1"); shift ;;
  esac
done

builder=""
for candidate in docker podman buildah; do
  if command -v "$candidate" >/dev/null 2>&1; then
    case "$candidate" in
      docker) docker info >/dev/null 2>&1 && builder=docker ;;
      *) builder="$candidate" ;;
    esac
  fi
  [ -n "$builder" ] && break
done
if [ -z "$builder" ]; then
  echo "error: no OCI image builder found: install docker (with a running engine), podman or buildah" >&2
  exit 2
fi

# image name, package directory, Dockerfile
images=(
  "kaito-controller packages/kaito-controller Dockerfile"
  "gpu-provisioner packages/gpu-provisioner Dockerfile"
  "kaito-inference packages/inference-server Dockerfile"
  "kaito-inference-cpu packages/inference-server Dockerfile.cpu"
  "kaito-tuning packages/tuning-job Dockerfile"
)

version_of() {
  python3 - "$root/$1/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f)["project"]["version"])
PY
}

for entry in "${images[@]}"; do
  read -r name dir dockerfile <<<"$entry"
  if [ ${#packages[@]} -gt 0 ] && [[ ! " ${packages[*]} " == *" $dir "* ]]; then continue; fi
  [ -f "$root/$dir/$dockerfile" ] || { echo "skip $name: $dir/$dockerfile missing" >&2; continue; }
  tag="$registry/$name:$(version_of "$dir")"
  echo "==> $builder: building $tag from $dir/$dockerfile"
  start=$(date +%s)
  case "$builder" in
    buildah) buildah bud -f "$root/$dir/$dockerfile" -t "$tag" "$root" ;;
    *) "$builder" build -f "$root/$dir/$dockerfile" -t "$tag" "$root" ;;
  esac
  echo "    built $tag in $(( $(date +%s) - start ))s"
  if [ -n "$kind_cluster" ]; then
    kind load docker-image "$tag" --name "$kind_cluster"
  fi
done
