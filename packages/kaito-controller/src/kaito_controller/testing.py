"""Test helpers shipped with the package: what a provisioner and a kubelet would write.

Why: unit tests, e2e tests and the benchmark all need "a Ready NodeClaim and its GPU Node"
without running a provisioner; keeping one builder avoids three slightly different fakes.
"""

from __future__ import annotations

import copy
from typing import Any


def ready_node(name: str, *, labels: dict[str, str], gpus: int = 1) -> dict[str, Any]:
    """A Ready Node with ``gpus`` allocatable ``nvidia.com/gpu``."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels)},
        "status": {
            "capacity": {"nvidia.com/gpu": str(gpus)},
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def satisfy(claim: dict[str, Any], *, gpus: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a provisioner does for a NodeClaim: the claim Ready, and its Node with the claim's
    labels plus the instance type."""
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


def rollout_done(workload: dict[str, Any]) -> dict[str, Any]:
    """A Deployment/StatefulSet whose replicas are all updated and ready."""
    workload = copy.deepcopy(workload)
    n = workload["spec"].get("replicas", 1)
    workload["metadata"]["generation"] = 1
    workload["status"] = {
        "observedGeneration": 1,
        "replicas": n,
        "readyReplicas": n,
        "updatedReplicas": n,
    }
    return workload
