"""Builders for NodeClaim dicts shaped like the ones the workspace controller writes."""

from __future__ import annotations

from typing import Any

SKU = "Standard_NC6s_v3"


def nodeclaim(
    name: str = "ws1a2b3c4d5",
    *,
    sku: str | None = SKU,
    storage: str | None = "120Gi",
    workspace: str = "phi-3",
    namespace: str = "default",
    created: str = "2026-11-25T07:00:00Z",
    status: dict[str, Any] | None = None,
    uid: str = "uid-1",
    deleted: str | None = None,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    requirements: list[dict[str, Any]] = [
        {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if sku is not None:
        requirements.append(
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [sku]}
        )
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid,
        "generation": 1,
        "creationTimestamp": created,
        "labels": {
            "kaito.sh/workspace": workspace,
            "kaito.sh/workspacenamespace": namespace,
            "karpenter.sh/nodepool": "kaito",
            **(extra_labels or {}),
        },
        "annotations": {"karpenter.sh/do-not-disrupt": "true"},
    }
    if deleted:
        meta["deletionTimestamp"] = deleted
    spec: dict[str, Any] = {
        "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
        "requirements": requirements,
        "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
    }
    if storage is not None:
        spec["resources"] = {"requests": {"storage": storage}}
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": meta,
        "spec": spec,
        "status": status or {},
    }
