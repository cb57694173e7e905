"""An in-memory `KubeAPI` for unit tests: Nodes, NodeClaims and Pods as dicts.

Why: lifecycle, termination and GC logic talk to the API server only through `KubeAPI`; this
fake keeps their tests fast and deterministic. It implements JSON merge patch (RFC 7386) the way
the API server does, records every call in ``calls``, and lets a test mark pods as protected by
a PodDisruptionBudget (``pdb_blocked``) so eviction refusals can be exercised.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kaito_gpu_provisioner.kube import KubeError


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch and return the result (inputs are not modified)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class MemoryKube:
    """`KubeAPI` backed by dicts. Objects are deep-copied in and out, like a real server."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.nodeclaims: dict[str, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pdb_blocked: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str]] = []

    async def get_node(self, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_node", name))
        node = self.nodes.get(name)
        return copy.deepcopy(node) if node is not None else None

    async def list_nodes(self, label_selector: str = "") -> list[dict[str, Any]]:
        self.calls.append(("list_nodes", label_selector))
        return [
            copy.deepcopy(n)
            for n in self.nodes.values()
            if _matches(n["metadata"].get("labels") or {}, label_selector)
        ]

    async def create_node(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(("create_node", name))
        if name in self.nodes:
            raise KubeError(f"nodes {name!r} already exists", status=409)
        node = copy.deepcopy(dict(body))
        node["metadata"].setdefault("uid", f"uid-node-{name}")
        self.nodes[name] = node
        return copy.deepcopy(node)

    async def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch_node", name))
        if name in self.nodes:
            self.nodes[name] = merge_patch(self.nodes[name], patch)

    async def delete_node(self, name: str) -> None:
        self.calls.append(("delete_node", name))
        self.nodes.pop(name, None)

    async def list_nodeclaims(self) -> list[dict[str, Any]]:
        self.calls.append(("list_nodeclaims", ""))
        return [copy.deepcopy(c) for c in self.nodeclaims.values()]

    async def patch_nodeclaim_status(self, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch_nodeclaim_status", name))
        if name in self.nodeclaims:
            self.nodeclaims[name] = merge_patch(self.nodeclaims[name], {"status": dict(patch)})

    async def patch_nodeclaim(self, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch_nodeclaim", name))
        if name in self.nodeclaims:
            self.nodeclaims[name] = merge_patch(self.nodeclaims[name], patch)

    async def delete_nodeclaim(self, name: str) -> None:
        self.calls.append(("delete_nodeclaim", name))
        self.nodeclaims.pop(name, None)

    async def list_pods_on_node(self, node_name: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods_on_node", node_name))
        return [
            copy.deepcopy(p)
            for p in self.pods.values()
            if (p.get("spec") or {}).get("nodeName") == node_name
        ]

    async def evict_pod(self, namespace: str, name: str) -> bool:
        self.calls.append(("evict_pod", f"{namespace}/{name}"))
        if (namespace, name) in self.pdb_blocked:
            return False
        self.pods.pop((namespace, name), None)
        return True

    def kwok_tick(self) -> None:
        """Test helper: do what the kwok controller does, mark every fake node Ready."""
        for node in self.nodes.values():
            if (node["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") != "fake":
                continue
            status = node.setdefault("status", {})
            status["conditions"] = [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]

    def add_pod(self, namespace: str, name: str, node_name: str, **extra: Any) -> None:
        """Test helper: put a pod on a node (``extra`` merges into its metadata)."""
        self.pods[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace, **extra},
            "spec": {"nodeName": node_name},
        }
