"""Auto-provisioned capacity: one NodeClaim per node, served by a Karpenter-style provisioner.

Why: this is KAITO's default mode. The controller only writes NodeClaims and reads their
status; the provisioner creates the machines. Readiness needs every claim Ready *and* its Node
Ready with ``nvidia.com/gpu`` allocatable, and when a claim is stuck the first non-True
lifecycle condition (Launched, Registered, Initialized) is what the user sees, so a quota or
SKU error reported by the provisioner reaches the Workspace status verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kaito_api.conditions import (
    ConditionReason,
    ConditionStatus,
    ConditionType,
    NodeClaimConditionType,
    new_condition,
)
from kaito_api.labels import LABEL_INSTANCE_TYPE, LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito_api.nodeclaim import NodeClaim

from kaito_controller.capacity.base import (
    CapacityRequest,
    Manifest,
    Readiness,
    name_of,
    node_gpus,
    node_is_ready,
    user_affinity,
)
from kaito_controller.manifests.nodeclaim import NodeClaimTemplate, build_nodeclaim
from kaito_controller.naming import nodeclaim_name

LIFECYCLE = (
    NodeClaimConditionType.LAUNCHED,
    NodeClaimConditionType.REGISTERED,
    NodeClaimConditionType.INITIALIZED,
)
_PLACEHOLDER_REASONS = {ConditionReason.AWAITING_RECONCILIATION, "ReconcilingDependents", ""}
MESSAGE_LIMIT = 256  # KAITO caps condition messages it copies at 256 characters


@dataclass(frozen=True)
class NodeClaimCapacity:
    """``CapacityStrategy`` that emits NodeClaims."""

    cloud_provider: str = "azure"
    node_image_family: str = "ubuntu"
    template: NodeClaimTemplate | None = None
    name: str = "nodeclaim"

    def desired_names(self, req: CapacityRequest) -> list[str]:
        return [
            nodeclaim_name(req.ws_namespace, req.ws_name, req.ws_uid, i)
            for i in range(req.node_count)
        ]

    def plan_nodes(
        self, req: CapacityRequest, nodeclaims: Sequence[Manifest], nodes: Sequence[Manifest]
    ) -> list[Manifest]:
        """NodeClaims that do not exist yet. Existing ones are never re-applied: their spec
        is immutable, and a claim that is being deleted is left to finish first."""
        if not req.instance_type:
            return []
        existing = {name_of(c) for c in nodeclaims}
        return [
            build_nodeclaim(
                name,
                ws_name=req.ws_name,
                ws_namespace=req.ws_namespace,
                instance_type=req.instance_type,
                match_labels=req.match_labels,
                disk=req.disk,
                cloud_provider=self.cloud_provider,
                node_image_family=req.node_image_family or self.node_image_family,
                gpus=req.gpus_per_node,
                template=self.template,
            )
            for name in self.desired_names(req)
            if name not in existing
        ]

    def readiness(
        self, req: CapacityRequest, nodeclaims: Sequence[Manifest], nodes: Sequence[Manifest]
    ) -> Readiness:
        by_name = {name_of(c): c for c in nodeclaims}
        claims = [by_name.get(n) for n in self.desired_names(req)]
        missing = [n for n, c in zip(self.desired_names(req), claims, strict=True) if c is None]
        live = [NodeClaim.model_validate(c) for c in claims if c is not None]
        if missing:
            msg = f"waiting for NodeClaims to be created: {', '.join(missing)}"
            return _not_ready(ConditionReason.NODE_CLAIM_NOT_READY, msg, claims_ok=False)
        for claim in live:
            if claim.deleting:
                msg = f"NodeClaim {claim.name} is being deleted; it will be replaced"
                return _not_ready(ConditionReason.NODE_CLAIM_NOT_READY, msg, claims_ok=False)
        for claim in live:
            if not claim.is_ready:
                reason, message = claim_problem(claim)
                return _not_ready(reason, f"NodeClaim {claim.name}: {message}", claims_ok=False)
        nodes_by_name = {name_of(n): n for n in nodes}
        workers = []
        for claim in live:
            node_name = claim.node_name
            node = nodes_by_name.get(node_name)
            problem = _node_problem(node, node_name, req, claim)
            if problem:
                return _not_ready(problem[0], problem[1], claims_ok=True)
            workers.append(node_name)
        return Readiness(
            ready=True,
            reason=ConditionReason.NODES_READY,
            message=f"{len(workers)} node(s) ready",
            worker_nodes=tuple(sorted(workers)),
            conditions=(
                new_condition(
                    ConditionType.NODE_CLAIM_READY,
                    ConditionStatus.TRUE,
                    ConditionReason.NODE_CLAIMS_READY,
                    "all NodeClaims are ready",
                ),
                new_condition(
                    ConditionType.NODES_READY,
                    ConditionStatus.TRUE,
                    ConditionReason.NODES_READY,
                    "all nodes are ready with GPUs",
                ),
            ),
        )

    def node_affinity(self, req: CapacityRequest) -> list[dict[str, Any]]:
        return [
            *user_affinity(req.match_labels),
            {"key": LABEL_WORKSPACE, "operator": "In", "values": [req.ws_name]},
            {"key": LABEL_WORKSPACE_NAMESPACE, "operator": "In", "values": [req.ws_namespace]},
        ]


def claim_problem(claim: NodeClaim) -> tuple[str, str]:
    """``(reason, message)`` of the first non-True lifecycle condition, preferring a real
    error (e.g. ``LaunchFailed`` with the provider's quota message) over placeholders."""
    found: list[tuple[str, str]] = []
    for type_ in LIFECYCLE:
        cond = claim.condition(type_)
        if cond is None or cond.status == ConditionStatus.TRUE:
            continue
        reason = cond.reason
        message = cond.message or f"{type_}={cond.status}"
        found.append(
            (reason or ConditionReason.NODE_CLAIM_NOT_READY, f"{type_}: {message}"[:MESSAGE_LIMIT])
        )
        if reason not in _PLACEHOLDER_REASONS:
            return found[-1]
    if found:
        return found[0]
    return ConditionReason.NODE_CLAIM_NOT_READY, "waiting for the provisioner to launch the node"


def claim_gpus(claim: NodeClaim) -> int | None:
    """``nvidia.com/gpu`` the provisioner says the claim's node has (``status.allocatable``,
    which Karpenter fills from the launched instance type): None when it reported no
    resources at all, 0 when it reported resources without GPUs."""
    allocatable = claim.allocatable
    if not allocatable:
        return None
    return node_gpus({"status": {"allocatable": allocatable}})


def _node_problem(
    node: Manifest | None, node_name: str, req: CapacityRequest, claim: NodeClaim
) -> tuple[str, str] | None:
    if not node_name or node is None:
        return (
            ConditionReason.NODE_NOT_READY,
            f"node {node_name or '(not yet named)'} is not registered yet",
        )
    if not node_is_ready(node):
        return ConditionReason.NODE_NOT_READY, f"node {node_name} is not Ready"
    labels = (node.get("metadata") or {}).get("labels") or {}
    if req.instance_type and labels.get(LABEL_INSTANCE_TYPE) != req.instance_type:
        have = labels.get(LABEL_INSTANCE_TYPE, "(none)")
        return (
            ConditionReason.NODE_NOT_READY,
            f"node {node_name} has instance type {have}, want {req.instance_type}",
        )
    gpus, need = node_gpus(node), max(req.gpus_per_node, 1)
    if gpus < need:
        promised = claim_gpus(claim)
        if promised is not None and promised < need:
            # Not a device plugin still starting: the instance type the provisioner launched
            # has too few GPUs (e.g. a Karpenter instance-type list without nvidia.com/gpu).
            return (
                "InsufficientGPUs",
                f"NodeClaim {claim.name} reports {promised} allocatable nvidia.com/gpu for "
                f"node {node_name} (instance type {labels.get(LABEL_INSTANCE_TYPE, '?')}), "
                f"the Workspace needs {need} per node",
            )
        return (
            ConditionReason.NODE_PLUGINS_NOT_READY,
            f"node {node_name} has {gpus} allocatable nvidia.com/gpu, need "
            f"{need} (waiting for the NVIDIA device plugin)",
        )
    return None


def _not_ready(reason: str, message: str, *, claims_ok: bool) -> Readiness:
    claim_cond = (
        new_condition(
            ConditionType.NODE_CLAIM_READY,
            ConditionStatus.TRUE,
            ConditionReason.NODE_CLAIMS_READY,
            "all NodeClaims are ready",
        )
        if claims_ok
        else new_condition(ConditionType.NODE_CLAIM_READY, ConditionStatus.FALSE, reason, message)
    )
    nodes_cond = new_condition(
        ConditionType.NODES_READY,
        ConditionStatus.FALSE,
        reason if claims_ok else ConditionReason.NODE_NOT_READY,
        message,
    )
    return Readiness(
        ready=False, reason=reason, message=message, conditions=(claim_cond, nodes_cond)
    )
