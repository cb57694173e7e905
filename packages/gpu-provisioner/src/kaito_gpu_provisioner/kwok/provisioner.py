"""`KwokNodeProvisioner`: NodeClaims served by fake KWOK nodes, for local clusters and tests.

Why: the workspace controller and the whole NodeClaim lifecycle must be exercisable without a
cloud. Like Karpenter's KWOK provider, this creates Node objects directly (KWOK has no kubelet;
the ``kwok.x-k8s.io/node: fake`` annotation makes the kwok controller keep them Ready and run
their pods). Each node gets the SKU's GPU capacity and GPU Feature Discovery labels from the
presets catalog, the claim's labels and taints, and providerID ``kwok://<claim name>``.

The node appears ``delay`` seconds after the claim was created. The delay is measured from the
claim's creationTimestamp, so it needs no memory and survives restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kaito_api.nodeclaim import NodeClaim

from kaito_gpu_provisioner.claims import (
    DEFAULT_NODEPOOL,
    INSTANCE_TYPE_LABEL,
    NODEPOOL_LABEL,
    required_instance_type,
    taint_dict,
)
from kaito_gpu_provisioner.kube import KubeAPI, KubeError
from kaito_gpu_provisioner.provisioner import (
    Instance,
    InvalidNodeClaim,
    LaunchPending,
    NodeClaimNotFound,
)
from kaito_gpu_provisioner.skus import shape_for

PROVIDER_PREFIX = "kwok://"
MANAGED_BY_LABEL = "kaito.sh/provisioned-by"
MANAGED_BY = "gpu-provisioner-kwok"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# Capacity every fake node has besides the SKU's (kwok keeps what we write).
BASE_CAPACITY = {"pods": "110", "ephemeral-storage": "1Ti"}


def build_node(
    claim: NodeClaim, *, shape_labels: Mapping[str, str], capacity: Mapping[str, str]
) -> dict[str, Any]:
    """The Node manifest for a claim (pure)."""
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": claim.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **shape_labels,
        NODEPOOL_LABEL: DEFAULT_NODEPOOL,
        **claim.labels,
        INSTANCE_TYPE_LABEL: required_instance_type(claim),
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    full_capacity = {**BASE_CAPACITY, **capacity}
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": claim.name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: "fake"},
        },
        "spec": {
            "providerID": PROVIDER_PREFIX + claim.name,
            "taints": [taint_dict(t) for t in (*claim.taints, *claim.startup_taints)],
        },
        "status": {"capacity": full_capacity, "allocatable": dict(full_capacity)},
    }
    return node


class KwokNodeProvisioner:
    """`NodeProvisioner` that creates KWOK-managed Nodes (see module docstring)."""

    name = "kwok"

    def __init__(
        self,
        kube: KubeAPI,
        *,
        delay_seconds: float = 0.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = kube
        self._delay = delay_seconds
        self._clock = clock

    async def create(self, claim: NodeClaim) -> Instance:
        instance_type = required_instance_type(claim)
        shape = shape_for(instance_type)
        if shape is None:
            raise InvalidNodeClaim(
                f"spec.requirements: instance type {instance_type!r} is not in the presets SKU "
                "catalog; the kwok provider cannot shape a node for it"
            )
        node = await self._kube.get_node(claim.name)
        if node is None:
            remaining = self._remaining_delay(claim)
            if remaining > 0:
                raise LaunchPending(
                    f"kwok node {claim.name!r} appears in {remaining:.1f}s", retry_after=remaining
                )
            manifest = build_node(claim, shape_labels=shape.labels, capacity=shape.capacity)
            try:
                node = await self._kube.create_node(manifest)
            except KubeError as err:
                if err.status != 409:
                    raise
                node = await self._kube.get_node(claim.name)
                if node is None:
                    raise LaunchPending(f"kwok node {claim.name!r} is being replaced") from err
        return _instance(node)

    def _remaining_delay(self, claim: NodeClaim) -> float:
        if self._delay <= 0 or claim.created_at is None:
            return 0.0
        elapsed = (self._clock() - claim.created_at).total_seconds()
        return max(self._delay - elapsed, 0.0)

    async def delete(self, claim: NodeClaim) -> None:
        node = await self._kube.get_node(claim.name)
        if node is None or not _ours(node):
            raise NodeClaimNotFound(f"kwok node {claim.name!r} does not exist")
        await self._kube.delete_node(claim.name)

    async def get(self, claim_name: str) -> Instance:
        node = await self._kube.get_node(claim_name)
        if node is None or not _ours(node):
            raise NodeClaimNotFound(f"kwok node {claim_name!r} does not exist")
        return _instance(node)

    async def list(self) -> Sequence[Instance]:
        nodes = await self._kube.list_nodes(f"{MANAGED_BY_LABEL}={MANAGED_BY}")
        return [_instance(n) for n in nodes]


def _ours(node: Mapping[str, Any]) -> bool:
    labels: Mapping[str, str] = (node.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def _instance(node: Mapping[str, Any]) -> Instance:
    meta: Mapping[str, Any] = node.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    created = meta.get("creationTimestamp")
    return Instance(
        claim_name=str(meta.get("name")),
        instance_type=str(labels.get(INSTANCE_TYPE_LABEL, "")),
        provider_id=str((node.get("spec") or {}).get("providerID") or ""),
        node_name=str(meta.get("name")),
        labels=dict(labels),
        capacity=dict((node.get("status") or {}).get("capacity") or {}),
        state="Running",
        created_at=datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else None,
        deleting=bool(meta.get("deletionTimestamp")),
    )
