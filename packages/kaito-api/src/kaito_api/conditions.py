"""Condition types, reasons and the pure helpers that maintain a conditions list.

Workspace and NodeClaim status both carry a ``metav1.Condition``-shaped list. The controller
and the provisioner write it; ``kubectl get workspace`` shows some of it as printer columns.
The helpers here are pure (``now`` is passed in) so reconcile logic stays testable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kaito_api.types import Time

__all__ = [
    "Condition",
    "ConditionReason",
    "ConditionStatus",
    "ConditionType",
    "NodeClaimConditionType",
    "get_condition",
    "is_condition_true",
    "new_condition",
    "set_condition",
]


class ConditionType(StrEnum):
    """Condition types on a Workspace."""

    RESOURCE_READY = "ResourceReady"
    INFERENCE_READY = "InferenceReady"
    JOB_STARTED = "JobStarted"
    WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"
    WORKSPACE_READY = "WorkspaceReady"
    NODE_CLAIM_READY = "NodeClaimReady"
    NODES_READY = "NodesReady"
    WORKSPACE_DELETING = "WorkspaceDeleting"


class NodeClaimConditionType(StrEnum):
    """Condition types on a Karpenter NodeClaim (the lifecycle the provisioner drives)."""

    LAUNCHED = "Launched"
    REGISTERED = "Registered"
    INITIALIZED = "Initialized"
    READY = "Ready"


class ConditionStatus(StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionReason(StrEnum):
    """Reasons written by the controller and the provisioner (CamelCase, metav1 syntax)."""

    # NodeClaimReady / NodesReady / ResourceReady
    NODE_CLAIMS_READY = "NodeClaimsReady"
    NODE_CLAIM_NOT_READY = "NodeClaimNotReady"
    NODES_READY = "NodesReady"
    NODE_NOT_READY = "NodeNotReady"
    NODE_PLUGINS_NOT_READY = "NodePluginsNotReady"
    RESOURCE_READY = "WorkspaceResourceStatusSuccess"
    RESOURCE_NOT_READY = "WorkspaceResourceStatusNotReady"
    RESOURCE_WAITING = "ResourceNotReady"
    # InferenceReady
    INFERENCE_READY = "WorkspaceInferenceStatusSuccess"
    INFERENCE_PENDING = "WorkspaceInferenceStatusPending"
    MODEL_ACCESS_SECRET_MISSING = "ModelAccessSecretMissing"
    IMAGE_PULL_ERROR = "ImagePullError"
    CONTAINER_CRASH_LOOP = "ContainerCrashLoopBackOff"
    CONTAINER_OOM_KILLED = "ContainerOOMKilled"
    UNSCHEDULABLE = "Unschedulable"
    # JobStarted
    JOB_STARTED = "WorkspaceTuningJobStatusStarted"
    JOB_PENDING = "WorkspaceTuningJobStatusPending"
    JOB_FAILED = "WorkspaceTuningJobStatusFailed"
    JOB_RETRYING = "WorkspaceTuningJobRetrying"
    # WorkspaceSucceeded / WorkspaceReady
    WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"
    WORKSPACE_PENDING = "WorkspacePending"
    WORKSPACE_FAILED = "WorkspaceFailed"
    WORKSPACE_READY = "WorkspaceReady"
    WORKSPACE_NOT_READY = "WorkspaceNotReady"
    # WorkspaceDeleting
    WORKSPACE_DELETED = "WorkspaceDeleted"
    # Validation against the catalog (unknown preset, instance type too small, ...)
    INVALID_SPEC = "InvalidSpec"
    # NodeClaim lifecycle (Karpenter)
    AWAITING_RECONCILIATION = "AwaitingReconciliation"
    LAUNCH_FAILED = "LaunchFailed"
    NODE_NOT_FOUND = "NodeNotFound"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"


# metav1.Condition syntax (Karpenter's variant, which also allows an empty reason).
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?|)$"


class Condition(BaseModel):
    """One observation of the object's state (the shape of metav1.Condition)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_enum_values=True,
        # The API server (like metav1 and Karpenter) requires lastTransitionTime; in Python it
        # may be left out of a new condition because set_condition fills it in.
        json_schema_extra={"required": ["type", "status", "lastTransitionTime"]},
    )

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Type of the condition in CamelCase, e.g. ResourceReady.",
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: str = Field(
        default="",
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="Human-readable details about the last transition.",
    )
    last_transition_time: Time | None = Field(
        default=None,
        description=(
            "When the status last changed. set_condition fills it in; the API server requires it."
        ),
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation that the condition was set for.",
    )

    @property
    def is_true(self) -> bool:
        return self.status == ConditionStatus.TRUE


def new_condition(
    type_: str, status: str, reason: str, message: str = "", *, generation: int | None = None
) -> Condition:
    """A condition to set (``lastTransitionTime`` is filled in by :func:`set_condition`)."""
    return Condition(
        type=type_,
        status=ConditionStatus(status),
        reason=reason,
        message=message,
        observed_generation=generation,
    )


def get_condition(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    """The condition of type ``type_``, or None."""
    for condition in conditions or ():
        if condition.type == type_:
            return condition
    return None


def is_condition_true(conditions: Sequence[Condition] | None, type_: str) -> bool:
    """Whether the condition of type ``type_`` exists and is True."""
    condition = get_condition(conditions, type_)
    return condition is not None and condition.status == ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Condition] | None, new: Condition, now: datetime
) -> list[Condition]:
    """Return a copy of ``conditions`` with ``new`` added or replacing the one of its type.

    ``lastTransitionTime`` is kept from the existing condition when the status is unchanged
    (only reason/message/observedGeneration moved), and set to ``now`` when the status changed
    or the condition is new. The order of the other conditions is preserved; a new type is
    appended. The input list is not modified.
    """
    result: list[Condition] = []
    replaced = False
    for existing in conditions or ():
        if existing.type != new.type:
            result.append(existing)
            continue
        if replaced:  # drop duplicates of the same type
            continue
        keep_time = existing.status == new.status and existing.last_transition_time is not None
        when = existing.last_transition_time if keep_time else now
        result.append(new.model_copy(update={"last_transition_time": _second(when)}))
        replaced = True
    if not replaced:
        result.append(new.model_copy(update={"last_transition_time": _second(now)}))
    return result


def _second(value: datetime | None) -> datetime | None:
    # metav1.Time has second precision; truncating here keeps status patches idempotent.
    return value.replace(microsecond=0) if value is not None else None
