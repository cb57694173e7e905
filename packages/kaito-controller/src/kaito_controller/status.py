"""Workspace status: conditions, summary state and phase durations.

Why: the status is what ``kubectl get workspace`` and users read. This module sets conditions
(kaito_api's vocabulary, transition times kept while a status holds), folds them into the
summary state, and records how long node provisioning and workload start-up took. Why a
workload is stuck is ``kaito_controller.workload_state``. Everything is pure: ``now`` is an
argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kaito_api.conditions import Condition, ConditionReason, ConditionType, set_condition
from kaito_api.types import format_time

MESSAGE_LIMIT = 256


def short_message(text: str) -> str:
    """Whitespace folded, cut to the 256 characters KAITO allows a condition message."""
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    new: Sequence[Condition],
    *,
    now: datetime,
    generation: int | None,
    drop: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Existing conditions with ``new`` set (transition times kept when status is unchanged)
    and the types in ``drop`` removed; returned as JSON-ready dicts."""
    current = [
        Condition.model_validate(c) for c in existing or () if c.get("type") not in set(drop)
    ]
    for cond in new:
        current = set_condition(
            current,
            cond.model_copy(
                update={"message": short_message(cond.message), "observed_generation": generation}
            ),
            now,
        )
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in current]


def condition_time(
    conditions: Sequence[Mapping[str, Any]], type_: str, status: str = "True"
) -> str | None:
    for c in conditions:
        if c.get("type") == type_ and c.get("status") == status:
            return c.get("lastTransitionTime")
    return None


def phase_durations(
    previous: Mapping[str, float] | None,
    *,
    created: datetime | None,
    conditions: Sequence[Mapping[str, Any]],
    now: datetime,
    was_true: Mapping[str, bool],
) -> dict[str, float]:
    """Seconds each phase took, recorded once when it completes and never rewritten.

    ``nodeProvisioning``: creation to ResourceReady. ``workloadReady``: ResourceReady to
    InferenceReady (or ``jobStarted``: ResourceReady to JobStarted; ``jobCompleted``:
    JobStarted to WorkspaceSucceeded). The end of a phase is ``now`` at the pass that first
    sees the condition True (sub-second precision, unlike condition timestamps).
    """
    out = dict(previous or {})
    is_true = {c.get("type"): c.get("status") == "True" for c in conditions}
    phases = [
        ("nodeProvisioning", None, ConditionType.RESOURCE_READY),
        ("workloadReady", ConditionType.RESOURCE_READY, ConditionType.INFERENCE_READY),
        ("jobStarted", ConditionType.RESOURCE_READY, ConditionType.JOB_STARTED),
        ("jobCompleted", ConditionType.JOB_STARTED, ConditionType.WORKSPACE_SUCCEEDED),
    ]
    for name, start_type, end_type in phases:
        if name in out or not is_true.get(end_type):
            continue
        if end_type == ConditionType.WORKSPACE_SUCCEEDED and not is_true.get(
            ConditionType.JOB_STARTED
        ):
            continue  # inference: WorkspaceSucceeded is not a tuning phase end
        start = created if start_type is None else _parse(condition_time(conditions, start_type))
        # A phase that ended in an earlier pass whose record was lost: use the timestamps.
        end = now if not was_true.get(end_type) else _parse(condition_time(conditions, end_type))
        if start is not None and end is not None:
            out[name] = round(max(0.0, (end - start).total_seconds()), 3)
    return out


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso(now: datetime) -> str:
    return format_time(now)


def summary_state(kind: str, conds: Mapping[str, Condition], previous: str | None) -> str:
    """``Ready``/``NotReady``/``Pending`` (inference) or ``Running``/``Succeeded``/``Failed``/
    ``Pending`` (tuning)."""
    succeeded = conds.get(ConditionType.WORKSPACE_SUCCEEDED)
    if kind == "tuning":
        if succeeded is not None and succeeded.is_true:
            return "Succeeded"
        if succeeded is not None and succeeded.reason == ConditionReason.WORKSPACE_FAILED:
            return "Failed"
        started = conds.get(ConditionType.JOB_STARTED)
        if started is not None and started.is_true:
            return "Running"
        return "Pending"
    if succeeded is not None and succeeded.is_true:
        return "Ready"
    return "NotReady" if previous in ("Ready", "NotReady") else "Pending"
