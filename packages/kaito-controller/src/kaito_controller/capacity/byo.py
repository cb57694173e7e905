"""Bring-your-own capacity: existing nodes picked by the Workspace's ``labelSelector``.

Why: with node auto-provisioning off, nobody creates nodes; the user labels GPU nodes and the
Workspace selects them. Readiness is "enough Ready matching nodes, each with enough
``nvidia.com/gpu``"; when that fails, the message says which node falls short and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kaito_api.conditions import ConditionReason, ConditionStatus, ConditionType, new_condition
from kaito_api.labels import GPU_RESOURCE_NAME

from kaito_controller.capacity.base import (
    CapacityRequest,
    Manifest,
    Readiness,
    name_of,
    node_gpus,
    node_is_ready,
    user_affinity,
)


@dataclass(frozen=True)
class ByoCapacity:
    """``CapacityStrategy`` over user-labelled nodes; it never creates anything."""

    name: str = "byo"

    def plan_nodes(
        self, req: CapacityRequest, nodeclaims: Sequence[Manifest], nodes: Sequence[Manifest]
    ) -> list[Manifest]:
        return []

    def readiness(
        self, req: CapacityRequest, nodeclaims: Sequence[Manifest], nodes: Sequence[Manifest]
    ) -> Readiness:
        matching = [n for n in nodes if _matches(n, req)]
        need_gpus = max(req.gpus_per_node, 1)
        gpus = req.gpu_resource
        unit = "GPU" if gpus == GPU_RESOURCE_NAME else gpus
        usable = [n for n in matching if node_is_ready(n) and node_gpus(n, gpus) >= need_gpus]
        if len(usable) >= req.node_count:
            workers = tuple(sorted(name_of(n) for n in usable)[: req.node_count])
            msg = f"{len(workers)} node(s) match the labelSelector with >= {need_gpus} {unit}(s)"
            return Readiness(
                ready=True,
                reason=ConditionReason.NODES_READY,
                message=msg,
                worker_nodes=workers,
                conditions=(
                    new_condition(
                        ConditionType.NODES_READY,
                        ConditionStatus.TRUE,
                        ConditionReason.NODES_READY,
                        msg,
                    ),
                ),
            )
        selector = ",".join(f"{k}={v}" for k, v in sorted(req.match_labels.items()))
        if not matching:
            reason, msg = (
                ConditionReason.NODE_NOT_FOUND,
                f"no node matches the labelSelector {selector}",
            )
        else:
            short = [
                f"{name_of(n)} ({'Ready' if node_is_ready(n) else 'NotReady'}, "
                f"{node_gpus(n, gpus)} {unit})"
                for n in matching
                if n not in usable
            ]
            reason = ConditionReason.NODE_NOT_READY
            msg = (
                f"{len(usable)} of {req.node_count} needed node(s) matching {selector} are Ready "
                f"with >= {need_gpus} {gpus}; not usable: {', '.join(short)}"
            )
        return Readiness(
            ready=False,
            reason=reason,
            message=msg,
            conditions=(
                new_condition(ConditionType.NODES_READY, ConditionStatus.FALSE, reason, msg),
            ),
        )

    def node_affinity(self, req: CapacityRequest) -> list[dict[str, Any]]:
        return user_affinity(req.match_labels)


def _matches(node: Manifest, req: CapacityRequest) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in req.match_labels.items())
