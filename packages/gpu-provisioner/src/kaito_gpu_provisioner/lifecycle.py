"""Pure NodeClaim lifecycle: from a claim plus what was observed, the next status.

Why: the conditions are the provisioner's whole API towards KAITO, so their order and meaning
must be exact and testable without a cluster. Karpenter semantics are followed:

* ``Launched`` -> ``Registered`` -> ``Initialized`` in order; a later one is never True before
  an earlier one. Once True they stay True (node health is repair's job, not launch's).
* The root ``Ready`` is True when all three are True, False (``UnhealthyDependents``) when any is
  False, Unknown (``ReconcilingDependents``) otherwise, with a message listing the laggards.
* ``lastTransitionTime`` only moves when a condition's status changes.

Nothing here does I/O or reads the clock: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kaito_api.conditions import NodeClaimConditionType, new_condition, set_condition
from kaito_api.nodeclaim import NodeClaim, Taint

from kaito_gpu_provisioner.claims import (
    GPU_RESOURCE,
    GROUP,
    INITIALIZED_LABEL,
    INSTANCE_TYPE_LABEL,
    KIND,
    REGISTERED_LABEL,
    VERSION,
    taint_dict,
)
from kaito_gpu_provisioner.provisioner import Instance, LaunchPending, ProvisionerError

LAUNCHED, REGISTERED, INITIALIZED, READY = (
    NodeClaimConditionType.LAUNCHED,
    NodeClaimConditionType.REGISTERED,
    NodeClaimConditionType.INITIALIZED,
    NodeClaimConditionType.READY,
)
DEPENDENTS = (LAUNCHED, REGISTERED, INITIALIZED)
# Karpenter truncates cloud messages on conditions (gpu-provisioner raised it to 800); the CRD
# allows 32768. 800 keeps a full ARM error while bounding status size.
MAX_MESSAGE = 800


@dataclass(frozen=True)
class Decision:
    """What to write after one reconcile of a NodeClaim."""

    status: dict[str, Any]
    """Merge patch for the status subresource (empty when nothing changed)."""
    node_patch: dict[str, Any] | None
    """Merge patch for the Node (registration/initialization labels, taints, owner), if any."""
    ready: bool


def launched_condition(
    instance: Instance | None, error: ProvisionerError | None
) -> tuple[str, str, str]:
    """(status, reason, message) of Launched given the provider's answer."""
    if instance is not None and instance.provider_id:
        return "True", LAUNCHED, ""
    if error is None:
        return "Unknown", "AwaitingReconciliation", "object is awaiting reconciliation"
    if isinstance(error, LaunchPending):
        return "Unknown", error.reason, error.message
    # Non-retryable classes (quota, SKU, credentials, invalid claim) are False so that the
    # controller shows them as failures; retryable ones stay Unknown while we keep trying.
    status = "Unknown" if error.retryable else "False"
    return status, error.reason, error.message


def registered_condition(launched: bool, node: Mapping[str, Any] | None) -> tuple[str, str, str]:
    if not launched:
        return "Unknown", "AwaitingReconciliation", "object is awaiting reconciliation"
    if node is None:
        return "Unknown", "NodeNotFound", "Node not registered with cluster"
    return "True", REGISTERED, ""


def initialized_condition(
    registered: bool,
    node: Mapping[str, Any] | None,
    claim: NodeClaim,
    capacity: Mapping[str, str],
) -> tuple[str, str, str]:
    if not registered or node is None:
        return "Unknown", "AwaitingReconciliation", "object is awaiting reconciliation"
    if not node_ready(node):
        return "Unknown", "NodeNotReady", "Node status is NotReady"
    present = {
        (t.get("key"), t.get("effect")) for t in (node.get("spec") or {}).get("taints") or []
    }
    waiting = [t.key for t in claim.startup_taints if (t.key, t.effect) in present]
    if waiting:
        return "Unknown", "StartupTaintsExist", f"StartupTaint {waiting[0]!r} still exists"
    allocatable: Mapping[str, Any] = (node.get("status") or {}).get("allocatable") or {}
    if _positive(capacity.get(GPU_RESOURCE)) and not _positive(allocatable.get(GPU_RESOURCE)):
        return "Unknown", "ResourceNotRegistered", f"Resource {GPU_RESOURCE!r} was not registered"
    return "True", INITIALIZED, ""


def root_condition(statuses: Mapping[str, str]) -> tuple[str, str, str]:
    if all(statuses[t] == "True" for t in DEPENDENTS):
        return "True", READY, ""
    laggards = ", ".join(f"{t}={statuses[t]}" for t in DEPENDENTS if statuses[t] != "True")
    if any(statuses[t] == "False" for t in DEPENDENTS):
        return "False", "UnhealthyDependents", laggards
    return "Unknown", "ReconcilingDependents", laggards


def next_status(
    claim: NodeClaim,
    *,
    instance: Instance | None,
    launch_error: ProvisionerError | None,
    node: Mapping[str, Any] | None,
    now: datetime,
) -> Decision:
    """Compute the claim's next status and the node patch for one observation."""
    previous = {t: _status_of(claim, t) for t in (*DEPENDENTS, READY)}
    wanted: dict[str, tuple[str, str, str]] = {}
    if previous[LAUNCHED] == "True" and claim.provider_id:
        wanted[LAUNCHED] = ("True", LAUNCHED, "")
    else:
        wanted[LAUNCHED] = launched_condition(instance, launch_error)
    launched = wanted[LAUNCHED][0] == "True"
    wanted[REGISTERED] = (
        ("True", REGISTERED, "")
        if previous[REGISTERED] == "True"
        else registered_condition(launched, node)
    )
    registered = wanted[REGISTERED][0] == "True"
    capacity = dict(instance.capacity) if instance is not None else dict(claim.capacity)
    wanted[INITIALIZED] = (
        ("True", INITIALIZED, "")
        if previous[INITIALIZED] == "True"
        else initialized_condition(registered, node, claim, capacity)
    )
    wanted[READY] = root_condition({t: wanted[t][0] for t in DEPENDENTS})

    conditions = _merge_conditions(claim, wanted, now=now)
    status: dict[str, Any] = {"conditions": conditions}
    provider_id = claim.provider_id or (instance.provider_id if instance else "")
    if provider_id:
        status["providerID"] = provider_id
    if registered and node is not None:
        status["nodeName"] = node["metadata"]["name"]
        node_status: Mapping[str, Any] = node.get("status") or {}
        status["capacity"] = dict(node_status.get("capacity") or capacity)
        status["allocatable"] = dict(node_status.get("allocatable") or capacity)
    elif launched and capacity:
        status["capacity"] = capacity
        status["allocatable"] = capacity
    if _unchanged(claim, status):
        status = {}
    node_patch = registration_patch(claim, node, initialized=wanted[INITIALIZED][0] == "True")
    return Decision(status=status, node_patch=node_patch, ready=wanted[READY][0] == "True")


def registration_patch(
    claim: NodeClaim, node: Mapping[str, Any] | None, *, initialized: bool
) -> dict[str, Any] | None:
    """Node merge patch that Karpenter's registration/initialization would apply, or None.

    Registration: the claim's labels plus ``karpenter.sh/registered=true``, the claim's taints
    (unless already there) and an ownerReference to the claim. Initialization adds
    ``karpenter.sh/initialized=true``.
    """
    if node is None:
        return None
    meta: Mapping[str, Any] = node.get("metadata") or {}
    have_labels: Mapping[str, str] = meta.get("labels") or {}
    want_labels = {**claim.labels, REGISTERED_LABEL: "true"}
    if initialized:
        want_labels[INITIALIZED_LABEL] = "true"
    labels = {k: v for k, v in want_labels.items() if have_labels.get(k) != v}
    patch: dict[str, Any] = {}
    if labels:
        patch.setdefault("metadata", {})["labels"] = labels
    taints = _merged_taints((node.get("spec") or {}).get("taints") or [], claim.taints)
    if taints is not None:
        patch["spec"] = {"taints": taints}
    owners: Sequence[Mapping[str, Any]] = meta.get("ownerReferences") or []
    if claim.uid and not any(o.get("uid") == claim.uid for o in owners):
        patch.setdefault("metadata", {})["ownerReferences"] = [
            *owners,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": claim.name,
                "uid": claim.uid,
                "blockOwnerDeletion": True,
            },
        ]
    return patch or None


def claim_labels(claim: NodeClaim, instance: Instance | None) -> dict[str, str]:
    """Labels Karpenter adds to a launched claim (missing ones only): the instance type, which
    ``kubectl get nodeclaims`` shows in its TYPE column."""
    if instance is None or not instance.instance_type:
        return {}
    if claim.labels.get(INSTANCE_TYPE_LABEL):
        return {}
    return {INSTANCE_TYPE_LABEL: instance.instance_type}


def node_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _merged_taints(
    have: Sequence[Mapping[str, Any]], want: Sequence[Taint]
) -> list[dict[str, Any]] | None:
    present = {(t.get("key"), t.get("effect")) for t in have}
    missing = [taint_dict(t) for t in want if (t.key, t.effect) not in present]
    if not missing:
        return None
    return [dict(t) for t in have] + missing


def _status_of(claim: NodeClaim, type_: str) -> str:
    cond = claim.condition(type_)
    return str(cond.status) if cond else ""


def _merge_conditions(
    claim: NodeClaim, wanted: Mapping[str, tuple[str, str, str]], *, now: datetime
) -> list[dict[str, Any]]:
    """kaito_api's set_condition over the claim's conditions (transition times kept while a
    status holds, other conditions left in place), written back as JSON."""
    conditions = claim.conditions
    for type_, (status, reason, message) in wanted.items():
        new = new_condition(
            type_, status, reason, message[:MAX_MESSAGE], generation=claim.generation
        )
        conditions = set_condition(conditions, new, now)
    return [c.model_dump(mode="json", exclude_none=True) for c in conditions]


def _unchanged(claim: NodeClaim, status: Mapping[str, Any]) -> bool:
    old = {(c.type, str(c.status), c.reason, c.message) for c in claim.conditions}
    new = {(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]}
    return (
        old == new
        and status.get("providerID", "") == claim.provider_id
        and status.get("nodeName", claim.node_name) == claim.node_name
    )


def _positive(value: object) -> bool:
    try:
        return int(str(value)) > 0
    except ValueError:
        return False
