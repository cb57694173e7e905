"""Fixtures shared by the controller's tests: Workspaces from the quick starts, fake nodes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "examples" / "quickstart"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def load_example(name: str, *, namespace: str = "default", uid: str = "uid-1") -> dict[str, Any]:
    body = yaml.safe_load((QUICKSTART / name).read_text())
    body["apiVersion"] = "kaito.sh/v1beta1"  # what the controller reads (storage version)
    meta = body.setdefault("metadata", {})
    meta.update(
        namespace=namespace,
        uid=uid,
        generation=1,
        resourceVersion="1",
        creationTimestamp="2026-01-01T11:59:00Z",
    )
    return body


def ready_node(name: str, *, labels: dict[str, str], gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": {"nvidia.com/gpu": str(gpus)},
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def satisfy(claim: dict[str, Any], *, gpus: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a provisioner does: a Ready NodeClaim and its Node with the claim's labels."""
    claim = copy.deepcopy(claim)
    node_name = f"node-{claim['metadata']['name']}"
    instance = next(
        r["values"][0]
        for r in claim["spec"]["requirements"]
        if r["key"] == "node.kubernetes.io/instance-type"
    )
    claim["status"] = {
        "nodeName": node_name,
        "conditions": [
            {"type": t, "status": "True", "reason": t, "lastTransitionTime": "2026-01-01T12:00:00Z"}
            for t in ("Launched", "Registered", "Initialized", "Ready")
        ],
    }
    labels = {**claim["metadata"]["labels"], "node.kubernetes.io/instance-type": instance}
    return claim, ready_node(node_name, labels=labels, gpus=gpus)


@pytest.fixture
def phi3() -> dict[str, Any]:
    return load_example("phi-3-mini-inference.yaml")


@pytest.fixture
def phi3_tuning() -> dict[str, Any]:
    return load_example("phi-3-qlora-tuning.yaml")
