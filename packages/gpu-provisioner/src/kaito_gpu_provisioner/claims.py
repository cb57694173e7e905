"""Parsing a `karpenter.sh/v1` NodeClaim into kaito_api's typed model, and the facts the
providers derive from it.

Why: kopf hands handlers raw dictionaries; the controller that writes the claims and this
provisioner share one model (``kaito_api.nodeclaim.NodeClaim``), parsed once here, so providers
never dig through raw dicts. Errors name the field, e.g. ``spec.requirements: no
'node.kubernetes.io/instance-type' requirement``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kaito_api import labels as wk
from kaito_api.nodeclaim import NodeClaim, Taint
from pydantic import ValidationError

from kaito_gpu_provisioner.provisioner import Instance, InvalidNodeClaim

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


def parse_nodeclaim(body: Mapping[str, Any]) -> NodeClaim:
    """The typed NodeClaim of a kopf body or API JSON; raises InvalidNodeClaim naming the field."""
    try:
        claim = NodeClaim.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidNodeClaim(f"{where}: {first['msg']}") from err
    if not claim.name:
        raise InvalidNodeClaim("metadata.name: a NodeClaim needs a name")
    return claim


def claim_for_instance(instance: Instance) -> NodeClaim:
    """A NodeClaim standing for capacity whose claim is gone (garbage collection), as
    Karpenter's ``CloudProvider.List`` turns instances back into NodeClaims."""
    requirements = (
        [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [instance.instance_type]}]
        if instance.instance_type
        else []
    )
    return NodeClaim.model_validate(
        {
            "metadata": {"name": instance.claim_name},
            "spec": {
                "nodeClassRef": {
                    "group": KAITO_NODE_CLASS[0],
                    "kind": KAITO_NODE_CLASS[1],
                    "name": "default",
                },
                "requirements": requirements,
            },
            "status": {"providerID": instance.provider_id, "nodeName": instance.node_name},
        }
    )


def required_instance_type(claim: NodeClaim) -> str:
    """The first instance-type value; raises InvalidNodeClaim if there is none."""
    if not claim.instance_types:
        raise InvalidNodeClaim(
            f"spec.requirements: nodeclaim {claim.name!r} has no "
            f"{INSTANCE_TYPE_LABEL!r} requirement with operator In and a value"
        )
    return claim.instance_types[0]


def storage_bytes(claim: NodeClaim) -> int:
    """``spec.resources.requests.storage`` in bytes; raises if absent or not positive."""
    if claim.storage_request is None:
        raise InvalidNodeClaim(
            f"spec.resources.requests.storage: nodeclaim {claim.name!r} has no storage request"
        )
    value = parse_quantity(claim.storage_request, "spec.resources.requests.storage")
    if value <= 0:
        raise InvalidNodeClaim(
            f"spec.resources.requests.storage: must be positive, got {claim.storage_request!r}"
        )
    return value


def taint_dict(taint: Taint) -> dict[str, str]:
    """A taint as the Node spec writes it (no empty value)."""
    out = {"key": taint.key, "effect": taint.effect}
    if taint.value:
        out["value"] = taint.value
    return out


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
