"""The subset of Karpenter's ``karpenter.sh/v1`` NodeClaim shared by controller and provisioner.

The NodeClaim is the only contract between the Workspace controller (which creates one per
GPU node it needs) and the node provisioner (which turns it into a node and reports back in
``status``), as in KAITO, so either side can be swapped for the real component. The fields
here are a compatible subset of Karpenter's v1 schema: every object our code writes validates
against Karpenter's own CRD. Reading is lenient (fields we do not model are kept as extras)
because a real Karpenter may write more.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from kaito_api.conditions import (
    Condition,
    ConditionStatus,
    NodeClaimConditionType,
    get_condition,
    is_condition_true,
)
from kaito_api.labels import LABEL_INSTANCE_TYPE
from kaito_api.objectmeta import ObjectMeta
from kaito_api.rules import ApiModel, Rule
from kaito_api.types import LabelKey, LabelValue, Quantity, Time

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "NodeClaim",
    "NodeClaimSpec",
    "NodeClaimStatus",
    "NodeClassReference",
    "NodeSelectorRequirementWithMinValues",
    "ResourceRequirements",
    "Taint",
]

GROUP = "karpenter.sh"
VERSION = "v1"
KIND = "NodeClaim"
API_VERSION = f"{GROUP}/{VERSION}"

_DURATION_PATTERN = r"^(([0-9]+(s|m|h))+|Never)$"


class _KarpenterModel(ApiModel):
    """Karpenter objects: keep unknown fields (a real Karpenter may set more than we model)."""

    model_config = ConfigDict(extra="allow")


class NodeClassReference(_KarpenterModel):
    """The provider-specific node class the claim is for (KAITO: kaito.sh/KaitoNodeClass)."""

    group: str = Field(
        min_length=1, max_length=253, pattern=r"^[^/]*$", description="API group of the node class."
    )
    kind: str = Field(min_length=1, max_length=63, description="Kind of the node class.")
    name: str = Field(min_length=1, max_length=253, description="Name of the node class.")


# Label domains Karpenter reserves in requirement keys, with the well-known exceptions.
WELL_KNOWN_KUBERNETES_KEYS = (
    "beta.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node.kubernetes.io/windows-build",
)
WELL_KNOWN_KARPENTER_KEYS = ("karpenter.sh/capacity-type", "karpenter.sh/nodepool")


def _domain_ends_with(key: str, suffix: str) -> bool:
    """Whether the part of ``key`` before the first '/' ends with ``suffix``."""
    return key.split("/", 1)[0].endswith(suffix)


def _domain_cel(suffix: str) -> str:
    """CEL twin of :func:`_domain_ends_with` (a regex on the part before the first '/')."""
    return "self.key.matches('^[^/]*" + suffix.replace(".", "\\\\.") + "(/|$)')"


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _kubernetes_domain_ok(key: str) -> bool:
    return (
        key in WELL_KNOWN_KUBERNETES_KEYS
        or _domain_ends_with(key, "node.kubernetes.io")
        or _domain_ends_with(key, "node-restriction.kubernetes.io")
        or not _domain_ends_with(key, "kubernetes.io")
    )


class NodeSelectorRequirementWithMinValues(_KarpenterModel):
    """A scheduling requirement on node labels, e.g. instance-type In [Standard_NC6s_v3]."""

    key: LabelKey = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In, NotIn, Exists, DoesNotExist, Gt or Lt."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        max_length=64,
        description="Values; In needs at least one, Gt/Lt exactly one integer.",
    )
    min_values: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Minimum number of distinct values the scheduler must consider.",
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.operator != 'In' || (has(self.values) && self.values.size() > 0)",
            message="requirements with operator 'In' must have at least one entry in values",
            field="values",
            reason="FieldValueRequired",
            check=lambda s: s.operator != "In" or bool(s.values),
        ),
        Rule(
            cel=(
                "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && "
                "self.values.size() == 1 && self.values[0].matches('^[0-9]+$'))"
            ),
            message=(
                "requirements with operator 'Gt' or 'Lt' must have a single non-negative "
                "integer in values"
            ),
            field="values",
            check=lambda s: (
                s.operator not in ("Gt", "Lt")
                or (s.values is not None and len(s.values) == 1 and s.values[0].isdigit())
            ),
        ),
        Rule(
            cel=(
                "self.operator != 'In' || !has(self.minValues) || "
                "(has(self.values) && self.values.size() >= self.minValues)"
            ),
            message="requirements with minValues must have at least that many values",
            field="minValues",
            check=lambda s: (
                s.operator != "In" or s.min_values is None or len(s.values or ()) >= s.min_values
            ),
        ),
        Rule(
            cel=(
                f"self.key in {_cel_list(WELL_KNOWN_KUBERNETES_KEYS)} || "
                f"{_domain_cel('node.kubernetes.io')} || "
                f"{_domain_cel('node-restriction.kubernetes.io')} || "
                f"!{_domain_cel('kubernetes.io')}"
            ),
            message='label domain "kubernetes.io" is restricted in key',
            field="key",
            check=lambda s: _kubernetes_domain_ok(s.key),
        ),
        Rule(
            cel=f"{_domain_cel('kops.k8s.io')} || !{_domain_cel('k8s.io')}",
            message='label domain "k8s.io" is restricted in key',
            field="key",
            check=lambda s: (
                _domain_ends_with(s.key, "kops.k8s.io") or not _domain_ends_with(s.key, "k8s.io")
            ),
        ),
        Rule(
            cel=(
                f"self.key in {_cel_list(WELL_KNOWN_KARPENTER_KEYS)} || "
                f"!{_domain_cel('karpenter.sh')}"
            ),
            message='label domain "karpenter.sh" is restricted in key',
            field="key",
            check=lambda s: (
                s.key in WELL_KNOWN_KARPENTER_KEYS or not _domain_ends_with(s.key, "karpenter.sh")
            ),
        ),
        Rule(
            cel="self.key != 'kubernetes.io/hostname'",
            message='label "kubernetes.io/hostname" is restricted in key',
            field="key",
            check=lambda s: s.key != "kubernetes.io/hostname",
        ),
    )


class Taint(_KarpenterModel):
    """A node taint, e.g. ``sku=gpu:NoSchedule``."""

    key: LabelKey = Field(description="Taint key.")
    value: LabelValue | None = Field(default=None, description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        description="NoSchedule, PreferNoSchedule or NoExecute."
    )
    time_added: Time | None = Field(default=None, description="When a NoExecute taint was added.")


class ResourceRequirements(_KarpenterModel):
    """Minimum resources the node must have."""

    requests: dict[str, Quantity] | None = Field(
        default=None,
        max_length=32,
        description=(
            "Resource name to quantity: cpu, memory, ephemeral-storage, storage (KAITO's OS "
            "disk size), nvidia.com/gpu."
        ),
    )


class NodeClaimSpec(_KarpenterModel):
    """What node to create. Immutable once created (as in Karpenter)."""

    node_class_ref: NodeClassReference = Field(
        description="The node class (provider configuration) to use."
    )
    requirements: list[NodeSelectorRequirementWithMinValues] = Field(
        max_length=100,
        description="Label requirements the node must satisfy (instance type, os, nodepool).",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Minimum resources of the node."
    )
    taints: list[Taint] | None = Field(
        default=None, max_length=64, description="Taints the node starts with and keeps."
    )
    startup_taints: list[Taint] | None = Field(
        default=None,
        max_length=64,
        description="Taints the node starts with that a daemon removes once it is ready.",
    )
    expire_after: str | None = Field(
        default=None,
        max_length=64,
        pattern=_DURATION_PATTERN,
        description="Lifetime of the node (Go duration such as 720h, or Never).",
    )
    termination_grace_period: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^([0-9]+(s|m|h))+$",
        description="How long draining may take before the node is forcibly removed.",
    )

    # As in Karpenter's CRD: a NodeClaim is replaced, never edited.
    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self == oldSelf",
            message="spec is immutable",
            field="",
            transition=True,
            check=lambda s, o: s == o,
        ),
    )


class NodeClaimStatus(_KarpenterModel):
    """What the provisioner created, written back by it."""

    provider_id: str | None = Field(
        default=None,
        alias="providerID",
        max_length=1024,
        description="Cloud provider id of the instance; equals the Node's spec.providerID.",
    )
    node_name: str | None = Field(
        default=None, max_length=253, description="Name of the Node that registered."
    )
    image_id: str | None = Field(
        default=None, alias="imageID", max_length=1024, description="OS image of the node."
    )
    capacity: dict[str, Quantity] | None = Field(
        default=None, max_length=64, description="Resources of the node."
    )
    allocatable: dict[str, Quantity] | None = Field(
        default=None, max_length=64, description="Resources available to pods."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=32,
        description="Launched, Registered, Initialized and Ready.",
    )
    last_pod_event_time: Time | None = Field(
        default=None, description="Last time a pod was scheduled to or removed from the node."
    )


class NodeClaim(_KarpenterModel):
    """A request for one node (cluster-scoped)."""

    api_version: Literal["karpenter.sh/v1"] = Field(
        default="karpenter.sh/v1", description="karpenter.sh/v1."
    )
    kind: Literal["NodeClaim"] = Field(default="NodeClaim", description="NodeClaim.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: NodeClaimSpec = Field(description="The node to create. Immutable.")
    status: NodeClaimStatus | None = Field(
        default=None, description="Observed state, written by the provisioner."
    )

    # Read accessors both operators use, so neither digs through raw dicts or re-models the
    # claim (Karpenter passes one typed NodeClaim across its CloudProvider seam).

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def uid(self) -> str:
        return self.metadata.uid or ""

    @property
    def generation(self) -> int:
        return self.metadata.generation or 0

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels or {}

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.annotations or {}

    @property
    def created_at(self) -> datetime | None:
        return self.metadata.creation_timestamp

    @property
    def deleted_at(self) -> datetime | None:
        return self.metadata.deletion_timestamp

    @property
    def deleting(self) -> bool:
        return self.metadata.deletion_timestamp is not None

    @property
    def instance_types(self) -> tuple[str, ...]:
        """Values of the first ``node.kubernetes.io/instance-type In [...]`` requirement."""
        for req in self.spec.requirements:
            if req.key == LABEL_INSTANCE_TYPE and req.operator == "In":
                return tuple(req.values or ())
        return ()

    @property
    def taints(self) -> tuple[Taint, ...]:
        return tuple(self.spec.taints or ())

    @property
    def startup_taints(self) -> tuple[Taint, ...]:
        return tuple(self.spec.startup_taints or ())

    @property
    def storage_request(self) -> str | None:
        """``spec.resources.requests.storage`` as written (KAITO's OS disk size), or None."""
        requests = (self.spec.resources.requests if self.spec.resources else None) or {}
        value = requests.get("storage")
        return None if value is None else str(value)

    @property
    def node_class(self) -> tuple[str, str]:
        """``(group, kind)`` of the node class the claim names."""
        return self.spec.node_class_ref.group, self.spec.node_class_ref.kind

    @property
    def provider_id(self) -> str:
        return (self.status.provider_id if self.status else None) or ""

    @property
    def node_name(self) -> str:
        return (self.status.node_name if self.status else None) or ""

    @property
    def conditions(self) -> list[Condition]:
        return list((self.status.conditions if self.status else None) or ())

    @property
    def capacity(self) -> dict[str, str]:
        return {
            k: str(v) for k, v in ((self.status.capacity if self.status else None) or {}).items()
        }

    @property
    def allocatable(self) -> dict[str, str]:
        values = (self.status.allocatable if self.status else None) or {}
        return {k: str(v) for k, v in values.items()}

    def condition(self, type_: str) -> Condition | None:
        return get_condition(self.conditions, type_)

    def is_true(self, type_: str) -> bool:
        return is_condition_true(self.conditions, type_)

    @property
    def is_ready(self) -> bool:
        """KAITO's ``IsNodeClaimReadyNotDeleting``: not being deleted, and ``Ready=True``; a
        claim without any Ready condition counts as ready once it has a ``status.nodeName``."""
        if self.deleting or self.status is None:
            return False
        ready = self.condition(NodeClaimConditionType.READY)
        if ready is None:
            return bool(self.status.node_name)
        return ready.status == ConditionStatus.TRUE
