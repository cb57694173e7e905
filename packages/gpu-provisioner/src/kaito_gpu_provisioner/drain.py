"""Which pods a node drain must evict (pure).

Why: before a GPU node's capacity is deleted its workload pods are evicted through the Eviction
API, so PodDisruptionBudgets are honoured. DaemonSet pods and static (mirror) pods are skipped as
``kubectl drain`` does: their controllers would recreate them on the same node. Pods already
finished or terminating need nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DISRUPTED_TAINT = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}


def evictable(pods: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of the pods to evict, in a stable order."""
    out: list[tuple[str, str]] = []
    for pod in pods:
        meta: Mapping[str, Any] = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            continue
        if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        out.append((str(meta.get("namespace", "")), str(meta.get("name", ""))))
    return sorted(out)


def cordon_patch(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """Merge patch that marks a node unschedulable and tainted disrupted, or None if it is."""
    spec: Mapping[str, Any] = node.get("spec") or {}
    taints = [dict(t) for t in spec.get("taints") or []]
    has_taint = any(t.get("key") == DISRUPTED_TAINT["key"] for t in taints)
    if spec.get("unschedulable") and has_taint:
        return None
    if not has_taint:
        taints.append(dict(DISRUPTED_TAINT))
    return {"spec": {"unschedulable": True, "taints": taints}}
