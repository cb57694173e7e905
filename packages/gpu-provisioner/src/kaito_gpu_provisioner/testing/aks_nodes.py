"""What AKS would register for an agent pool: the Node of its single VMSS instance (pure).

Why: the local ARM server (and the in-memory fakes) must play "the AKS side": when a pool
reaches Succeeded a Node joins with the labels, taints and providerID real AKS gives it
(reference section 3.6), so the Azure provider's node lookup runs unchanged. The node is
KWOK-managed (annotation ``kwok.x-k8s.io/node: fake``) and advertises the SKU's GPUs from the
presets catalog, as the NVIDIA device plugin would.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from kaito_gpu_provisioner.azure.pools import provider_id
from kaito_gpu_provisioner.claims import INSTANCE_TYPE_LABEL
from kaito_gpu_provisioner.skus import shape_for

BASE_CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "1Ti"}


def vmss_suffix(pool: str) -> str:
    """AKS's 8-digit VMSS number; stable per pool name here."""
    return f"{zlib.crc32(pool.encode()) % 10**8:08d}"


def node_name(pool: str) -> str:
    return f"aks-{pool}-{vmss_suffix(pool)}-vmss000000"


def parse_taint(text: str) -> dict[str, str]:
    """``key=value:Effect`` (AKS nodeTaints syntax) as a Kubernetes taint."""
    spec, _, effect = text.rpartition(":")
    key, _, value = spec.partition("=")
    out = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


def aks_node(
    pool: Mapping[str, Any], *, subscription: str, node_resource_group: str, cluster: str
) -> dict[str, Any]:
    """The Node AKS registers for a one-node pool (``pool`` is the REST JSON of the pool)."""
    name = str(pool["name"])
    props: Mapping[str, Any] = pool.get("properties") or {}
    vm_size = str(props.get("vmSize", ""))
    shape = shape_for(vm_size)
    capacity = {**BASE_CAPACITY, **(shape.capacity if shape else {})}
    labels = {
        "type": "kwok",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **(shape.labels if shape else {}),
        **(props.get("nodeLabels") or {}),
        "agentpool": name,
        "kubernetes.azure.com/agentpool": name,
        "kubernetes.azure.com/cluster": node_resource_group,
        "kubernetes.azure.com/mode": "user",
        INSTANCE_TYPE_LABEL: vm_size,
        "kubernetes.io/hostname": node_name(name),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(name),
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "fake.kaito.sh/cluster": cluster},
        },
        "spec": {
            "providerID": provider_id(
                subscription=subscription,
                node_resource_group=node_resource_group,
                pool=name,
                vmss_suffix=vmss_suffix(name),
            ),
            "taints": [parse_taint(t) for t in props.get("nodeTaints") or []],
        },
        # No conditions: KWOK marks the node Ready, as a kubelet would.
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }
