"""The capacity seam: what the planner asks of a node source, and node helpers both share.

Why: KAITO has several ways of getting GPU nodes (NodeClaims for a provisioner, nodes the
user brings). The planner should not care which; it asks a ``CapacityStrategy`` which objects
to create, whether the nodes are ready (and if not, *why*), and which node affinity pins the
workload to them. Implementations are pure functions of the observed state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kaito_api.conditions import Condition
from kaito_api.labels import GPU_RESOURCE_NAME

Manifest = dict[str, Any]


@dataclass(frozen=True)
class CapacityRequest:
    """What the Workspace needs: ``node_count`` nodes with ``gpus_per_node`` GPUs each."""

    ws_name: str
    ws_namespace: str
    ws_uid: str
    node_count: int
    gpus_per_node: int
    instance_type: str | None
    match_labels: Mapping[str, str]
    disk: str = "1024Gi"
    # The resource gpus_per_node counts: nvidia.com/gpu, or nvidia.com/mig-<profile>.
    gpu_resource: str = GPU_RESOURCE_NAME
    # The Workspace's kaito.sh/node-image-family annotation (lower-cased); None: the default.
    node_image_family: str | None = None


@dataclass(frozen=True)
class Readiness:
    """Whether the nodes are there, and the specific reason when they are not.

    ``conditions`` are extra Workspace conditions the strategy reports (``NodeClaimReady``,
    ``NodesReady``), in kaito_api's condition model.
    """

    ready: bool
    reason: str
    message: str
    worker_nodes: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()


class CapacityStrategy(Protocol):
    """A source of GPU nodes. All methods are pure."""

    @property
    def name(self) -> str: ...

    def plan_nodes(
        self, req: CapacityRequest, nodeclaims: Sequence[Manifest], nodes: Sequence[Manifest]
    ) -> list[Manifest]:
        """Objects to create so that the nodes will exist (may be empty)."""
        ...

    def readiness(
        self, req: CapacityRequest, nodeclaims: Sequence[Manifest], nodes: Sequence[Manifest]
    ) -> Readiness: ...

    def node_affinity(self, req: CapacityRequest) -> list[dict[str, Any]]:
        """``matchExpressions`` that pin the workload to this Workspace's nodes."""
        ...


def is_deleting(obj: Manifest) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def condition(obj: Manifest, type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return cond
    return None


def node_is_ready(node: Manifest) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True" and not is_deleting(node)


def node_gpus(node: Manifest, resource: str = GPU_RESOURCE_NAME) -> int:
    """``resource`` (``nvidia.com/gpu`` or a MIG slice) allocatable (capacity when allocatable
    is absent); 0 if unparsable."""
    status = node.get("status") or {}
    raw = (status.get("allocatable") or {}).get(resource)
    if raw is None:
        raw = (status.get("capacity") or {}).get(resource, "0")
    try:
        return int(str(raw))
    except ValueError:
        return 0


def user_affinity(match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(match_labels.items())]


def name_of(obj: Manifest) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
