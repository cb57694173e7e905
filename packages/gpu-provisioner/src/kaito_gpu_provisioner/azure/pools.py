"""Pure mapping between a NodeClaim and its AKS agent pool (REST JSON shape).

Why: what we ask AKS for must be exact and reviewable without any SDK or network: pool name =
claim name, one node, vmSize from the instance-type requirement, the claim's labels and taints as
node labels/taints, OS disk from the storage request, GPU driver install for GPU SKUs. The same
module reads pools back (is it ours, when was its claim created) for garbage collection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kaito_api.nodeclaim import NodeClaim, Taint

from kaito_gpu_provisioner.claims import (
    DEFAULT_NODEPOOL,
    IMAGE_FAMILY_ANNOTATION,
    NODEPOOL_LABEL,
    RAGENGINE_LABEL,
    WORKSPACE_LABEL,
    required_instance_type,
    storage_bytes,
)
from kaito_gpu_provisioner.provisioner import InvalidNodeClaim

# AKS rule for Linux pool names (also the REST spec's pattern, maxLength 12).
POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
MACHINE_TYPE_LABEL = "kaito.sh/machine-type"
CREATION_LABEL = "kaito.sh/creation-timestamp"
AGENTPOOL_LABELS = ("agentpool", "kubernetes.azure.com/agentpool")
_CREATION_FORMAT = "%Y-%m-%dT%H-%M-%SZ"  # dashes: a label value cannot contain ':'
_OS_SKUS = {"ubuntu": "Ubuntu", "azurelinux": "AzureLinux"}
IN_PROGRESS = frozenset(
    {"creating", "updating", "scaling", "upgrading", "starting", "stopping", "migrating"}
)


def validate_pool_name(name: str) -> str:
    if not POOL_NAME.match(name):
        raise InvalidNodeClaim(
            f"metadata.name: {name!r} cannot be an AKS agent pool name "
            "(1-12 characters, lowercase letters and digits, starting with a letter)"
        )
    return name


def aks_taint(taint: Taint) -> str:
    """AKS ``nodeTaints`` syntax: ``key=value:Effect``."""
    return f"{taint.key}={taint.value or ''}:{taint.effect}"


def os_sku(claim: NodeClaim) -> str:
    family = claim.annotations.get(IMAGE_FAMILY_ANNOTATION, "").strip().lower()
    return _OS_SKUS.get(family, "Ubuntu")


def agent_pool_body(claim: NodeClaim, *, gpu: bool, gpu_driver: str) -> dict[str, Any]:
    """The PUT body (``{"properties": ...}``) for the claim's agent pool.

    Raises:
        InvalidNodeClaim: the name, instance type or storage request cannot be served.
    """
    validate_pool_name(claim.name)
    vm_size = required_instance_type(claim)
    disk_gib = storage_bytes(claim) >> 30
    if disk_gib < 1:
        raise InvalidNodeClaim(
            f"spec.resources.requests.storage: {claim.storage_request!r} is under 1Gi"
        )
    created = claim.created_at or datetime.now(UTC)
    labels = {
        NODEPOOL_LABEL: DEFAULT_NODEPOOL,
        **claim.labels,
        MACHINE_TYPE_LABEL: "gpu" if gpu else "cpu",
        CREATION_LABEL: created.astimezone(UTC).strftime(_CREATION_FORMAT),
    }
    properties: dict[str, Any] = {
        "vmSize": vm_size,
        "count": 1,
        "type": "VirtualMachineScaleSets",
        "mode": "User",
        "osType": "Linux",
        "osSKU": os_sku(claim),
        "osDiskSizeGB": disk_gib,
        "nodeLabels": labels,
        "nodeTaints": [aks_taint(t) for t in claim.taints],
    }
    if gpu:
        properties["gpuProfile"] = {"driver": gpu_driver}
    return {"properties": properties}


def is_kaito_pool(node_labels: Mapping[str, str] | None) -> bool:
    """Pools we manage carry a KAITO owner label and the karpenter nodepool label."""
    labels = node_labels or {}
    return NODEPOOL_LABEL in labels and (WORKSPACE_LABEL in labels or RAGENGINE_LABEL in labels)


def creation_time(node_labels: Mapping[str, str] | None) -> datetime | None:
    raw = (node_labels or {}).get(CREATION_LABEL)
    if not raw:
        return None
    try:
        return datetime.strptime(raw, _CREATION_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def node_selector(pool_name: str) -> str:
    """Label selector for the nodes AKS registers for a pool."""
    return ",".join(f"{key}={pool_name}" for key in AGENTPOOL_LABELS)


def provider_id(
    *, subscription: str, node_resource_group: str, pool: str, vmss_suffix: str, instance: int = 0
) -> str:
    """The providerID AKS gives a VMSS node (see reference section 2.3)."""
    return (
        f"azure:///subscriptions/{subscription}/resourceGroups/{node_resource_group}"
        f"/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{pool}-{vmss_suffix}-vmss"
        f"/virtualMachines/{instance}"
    )
