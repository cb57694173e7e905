"""Pieces every builder shares: the Workspace identity, owner references, labels.

Why: each owned object must point back at its Workspace the same way (owner reference for
garbage collection, ``kaito.sh/workspace`` label for the watches and selectors), so that is
written once here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaito_api.labels import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, LABEL_WORKSPACE

MANAGED_BY = {"app.kubernetes.io/managed-by": "kaito-controller"}


@dataclass(frozen=True)
class WorkspaceRef:
    """Who owns the objects: enough of the Workspace's metadata to point back at it."""

    name: str
    namespace: str
    uid: str
    api_version: str = "kaito.sh/v1beta1"
    match_labels: Mapping[str, str] = field(default_factory=dict)

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": "Workspace",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def selector_labels(self) -> dict[str, str]:
        """Labels that select the Workspace's pods (and mark its namespaced objects)."""
        return {LABEL_WORKSPACE: self.name}

    def metadata(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """``metadata`` of a namespaced object owned by the Workspace."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {**MANAGED_BY, **self.selector_labels(), **(labels or {})},
            "ownerReferences": [self.owner_reference()],
        }
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta


def gpu_tolerations() -> list[dict[str, Any]]:
    """Tolerations of every GPU workload: the provisioner's ``sku=gpu`` taint and NVIDIA's."""
    return [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": GPU_TAINT_KEY,
            "operator": "Equal",
            "value": GPU_TAINT_VALUE,
            "effect": GPU_TAINT_EFFECT,
        },
    ]


def registry_config_volume(name: str, secret: str) -> dict[str, Any]:
    """A volume projecting a ``kubernetes.io/dockerconfigjson`` Secret as ``config.json``
    (the registry config ``oras`` and the tuning image's push/pull read)."""
    return {
        "name": name,
        "secret": {
            "secretName": secret,
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
        },
    }


def hf_token_env(secret: str | None) -> list[dict[str, Any]]:
    """``HF_TOKEN`` from the model-access Secret (optional), or nothing when there is none."""
    if not secret:
        return []
    ref = {"name": secret, "key": "HF_TOKEN", "optional": True}
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}}]


def required_node_affinity(requirements: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A pod ``affinity`` requiring all ``requirements`` (None when there are none)."""
    if not requirements:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": requirements}]
            }
        }
    }
