"""Fake GPUs on a kind cluster (only where Docker exists).

Why: on kind the nodes are real kubelets, so GPUs are faked two ways: the real nodes get
``nvidia.com/gpu`` through a node-status patch (the documented "advertise an extended
resource" procedure) plus the SKU's labels, and extra fake GPU nodes come from a ``kwok``
process run next to kind, managing only nodes annotated ``kwok.x-k8s.io/node=fake`` so it
never touches the real ones. Not exercised in CI (no Docker there).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubernetes import client

from kaito_e2e.fake_nodes import (
    KWOK_ANNOTATION,
    KWOK_ANNOTATION_VALUE,
    NodeShapeLike,
    gpu_status_patch,
)


def patch_fake_gpus(core: client.CoreV1Api, shape: NodeShapeLike, node_names: list[str]) -> None:
    """Give real nodes the shape's labels and GPU capacity (kubelet keeps extended resources)."""
    for name in node_names:
        core.patch_node(name, {"metadata": {"labels": dict(shape.labels)}})
        core.patch_node_status(name, gpu_status_patch(shape))


def start_kwok(kubeconfig: Path, tools_bin: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Run kwok against ``kubeconfig`` for annotated fake nodes only; the caller terminates it."""
    stages = tools_bin.parent / "kwok-stages.yaml"
    if not (tools_bin / "kwok").is_file() or not stages.is_file():
        raise FileNotFoundError(f"kwok or {stages} missing; run hack/build-tools.sh")
    log = log_path.open("ab")
    return subprocess.Popen(
        [
            str(tools_bin / "kwok"),
            f"--kubeconfig={kubeconfig}",
            f"--config={stages}",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
            "--node-lease-duration-seconds=40",
            "--cidr=10.250.0.0/16",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
