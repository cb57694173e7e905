"""Helpers shared by the provisioner's e2e tests and the benchmark (kubectl-driven).

Why: the e2e suite and ``bench/provisioner_latency.py`` both create NodeClaims shaped like the
workspace controller's and wait on their conditions; one copy keeps them in step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

ORDER = ("Launched", "Registered", "Initialized", "Ready")
Kubectl = Callable[..., Any]


def nodeclaim(name: str, sku: str = "Standard_NC6s_v3", workspace: str = "phi-3") -> dict[str, Any]:
    """A NodeClaim as the workspace controller writes it."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {
                "kaito.sh/workspace": workspace,
                "kaito.sh/workspacenamespace": "default",
                "karpenter.sh/nodepool": "kaito",
            },
            "annotations": {"karpenter.sh/do-not-disrupt": "true"},
        },
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [sku]},
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ],
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "resources": {"requests": {"storage": "120Gi"}},
        },
    }


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any] | None:
    """``kubectl get ... -o json`` as a dict, or None when it fails (e.g. not found)."""
    result = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    """Poll ``check`` until it returns something truthy; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def condition_status(claim: dict[str, Any] | None) -> dict[str, str]:
    conds = ((claim or {}).get("status") or {}).get("conditions") or []
    return {c["type"]: c["status"] for c in conds}
