"""A read-only, validated view of a `karpenter.sh/v1` NodeClaim as the provisioner needs it.

Why: kopf hands handlers raw dictionaries, and the providers need the same handful of facts
(instance type, labels, taints, storage request, providerID) with clear errors when the claim
is unusable. Parsing happens once here; providers never dig through raw dicts. Errors name the
field, e.g. ``spec.requirements: no 'node.kubernetes.io/instance-type' requirement``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kaito_api import labels as wk

from kaito_gpu_provisioner.provisioner import InvalidNodeClaim

GROUP = "karpenter.sh"
VERSION = "v1"
PLURAL = "nodeclaims"
KIND = "NodeClaim"

FINALIZER = wk.FINALIZER_NODECLAIM_TERMINATION
INSTANCE_TYPE_LABEL = wk.LABEL_INSTANCE_TYPE
NODEPOOL_LABEL = wk.LABEL_NODEPOOL
REGISTERED_LABEL = wk.LABEL_REGISTERED
INITIALIZED_LABEL = wk.LABEL_INITIALIZED
WORKSPACE_LABEL = wk.LABEL_WORKSPACE
RAGENGINE_LABEL = "kaito.sh/ragengine"
IMAGE_FAMILY_ANNOTATION = wk.ANNOTATION_NODE_IMAGE_FAMILY
KAITO_NODE_CLASS = ("kaito.sh", "KaitoNodeClass")
DEFAULT_NODEPOOL = wk.KAITO_NODEPOOL_NAME
GPU_RESOURCE = wk.GPU_RESOURCE_NAME

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


@dataclass(frozen=True)
class Taint:
    """A node taint as the NodeClaim spec writes it."""

    key: str
    effect: str
    value: str = ""

    def to_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out

    def to_aks(self) -> str:
        """AKS ``nodeTaints`` syntax: ``key=value:Effect``."""
        return f"{self.key}={self.value}:{self.effect}"


@dataclass(frozen=True)
class NodeClaimView:
    """The facts of one NodeClaim the provisioner acts on. Build it with `from_body`."""

    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict[str, str])
    annotations: Mapping[str, str] = field(default_factory=dict[str, str])
    instance_types: Sequence[str] = ()
    taints: Sequence[Taint] = ()
    startup_taints: Sequence[Taint] = ()
    storage_request: str | None = None
    node_class: tuple[str, str] = ("", "")
    provider_id: str = ""
    node_name: str = ""
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    generation: int = 0
    conditions: Sequence[Mapping[str, Any]] = ()
    capacity: Mapping[str, str] = field(default_factory=dict[str, str])

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NodeClaimView:
        """Parse a NodeClaim dict (kopf body or API JSON). Raises InvalidNodeClaim on bad shapes."""
        meta: Mapping[str, Any] = body.get("metadata") or {}
        spec: Mapping[str, Any] = body.get("spec") or {}
        status: Mapping[str, Any] = body.get("status") or {}
        name = str(meta.get("name") or "")
        if not name:
            raise InvalidNodeClaim("metadata.name: a NodeClaim needs a name")
        ref: Mapping[str, Any] = spec.get("nodeClassRef") or {}
        return cls(
            name=name,
            uid=str(meta.get("uid") or ""),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
            instance_types=_instance_types(spec.get("requirements") or []),
            taints=_taints(spec.get("taints") or [], "spec.taints"),
            startup_taints=_taints(spec.get("startupTaints") or [], "spec.startupTaints"),
            storage_request=_storage(spec),
            node_class=(str(ref.get("group") or ""), str(ref.get("kind") or "")),
            provider_id=str(status.get("providerID") or ""),
            node_name=str(status.get("nodeName") or ""),
            created_at=parse_time(meta.get("creationTimestamp")),
            deleted_at=parse_time(meta.get("deletionTimestamp")),
            generation=int(meta.get("generation") or 0),
            conditions=list(status.get("conditions") or []),
            capacity={str(k): str(v) for k, v in (status.get("capacity") or {}).items()},
        )

    @property
    def deleting(self) -> bool:
        return self.deleted_at is not None

    @property
    def instance_type(self) -> str:
        """The first instance-type value; raises InvalidNodeClaim if there is none."""
        if not self.instance_types:
            raise InvalidNodeClaim(
                f"spec.requirements: nodeclaim {self.name!r} has no "
                f"{INSTANCE_TYPE_LABEL!r} requirement with operator In and a value"
            )
        return self.instance_types[0]

    def storage_bytes(self) -> int:
        """``spec.resources.requests.storage`` in bytes; raises if absent or not positive."""
        if self.storage_request is None:
            raise InvalidNodeClaim(
                f"spec.resources.requests.storage: nodeclaim {self.name!r} has no storage request"
            )
        value = parse_quantity(self.storage_request, "spec.resources.requests.storage")
        if value <= 0:
            raise InvalidNodeClaim(
                f"spec.resources.requests.storage: must be positive, got {self.storage_request!r}"
            )
        return value

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        return next((c for c in self.conditions if c.get("type") == type_), None)

    def is_true(self, type_: str) -> bool:
        cond = self.condition(type_)
        return cond is not None and cond.get("status") == "True"


def is_managed(body: Mapping[str, Any]) -> bool:
    """Whether a NodeClaim is ours: KaitoNodeClass ref, or a KAITO workspace/ragengine label.

    NodeClaims referencing another NodeClass (e.g. AKSNodeClass for Azure Karpenter) are left
    alone, as the replacement contract requires.
    """
    spec: Mapping[str, Any] = body.get("spec") or {}
    ref: Mapping[str, Any] = spec.get("nodeClassRef") or {}
    if (ref.get("group"), ref.get("kind")) == KAITO_NODE_CLASS:
        return True
    labels: Mapping[str, Any] = (body.get("metadata") or {}).get("labels") or {}
    return WORKSPACE_LABEL in labels or RAGENGINE_LABEL in labels


def parse_quantity(text: str, field_name: str) -> int:
    """A Kubernetes quantity as an integer count of base units (``120Gi`` -> bytes)."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise InvalidNodeClaim(f"{field_name}: {text!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    factor = _BINARY.get(suffix) or _DECIMAL.get(suffix)
    if factor is None:
        raise InvalidNodeClaim(f"{field_name}: unknown unit {suffix!r} in {text!r}")
    return int(float(number) * factor)


def parse_time(value: object) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _instance_types(requirements: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    for req in requirements:
        if req.get("key") == INSTANCE_TYPE_LABEL and req.get("operator") == "In":
            return tuple(str(v) for v in req.get("values") or [])
    return ()


def _taints(raw: Sequence[Mapping[str, Any]], field_name: str) -> tuple[Taint, ...]:
    out: list[Taint] = []
    for i, item in enumerate(raw):
        key, effect = item.get("key"), item.get("effect")
        if not key or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise InvalidNodeClaim(f"{field_name}[{i}]: needs a key and a valid effect, got {item}")
        out.append(Taint(key=str(key), effect=str(effect), value=str(item.get("value") or "")))
    return tuple(out)


def _storage(spec: Mapping[str, Any]) -> str | None:
    requests: Mapping[str, Any] = (spec.get("resources") or {}).get("requests") or {}
    value = requests.get("storage")
    return None if value is None else str(value)
