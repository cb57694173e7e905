#!/usr/bin/env bash
# `helm lint` every chart with the pinned helm from the local-cluster tool cache (built by
# hack/build-tools.sh), so lint results do not depend on whatever helm a machine happens to have.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=$(bash "$root/hack/build-tools.sh" --print-bin 2>/dev/null || true)
helm="${HELM:-${bin_dir:+$bin_dir/helm}}"
if [ -z "$helm" ] || [ ! -x "$helm" ]; then
  echo "helm-lint: building the pinned tools first (hack/build-tools.sh)" >&2
  bash "$root/hack/build-tools.sh"
  helm="$(bash "$root/hack/build-tools.sh" --print-bin)/helm"
fi
for chart in "$root"/charts/*/; do
  [ -f "$chart/Chart.yaml" ] || continue
  "$helm" lint --strict "$chart"
done
