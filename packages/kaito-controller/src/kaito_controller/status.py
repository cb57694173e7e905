"""Workspace status: conditions, summary state, phase durations, and why things are stuck.

Why: the question users ask is "why is my Workspace not ready?". This module answers it from
observed objects alone: it maps pod and container states (Unschedulable, image pulls, crash
loops, OOM kills, evictions) and Job states to specific condition reasons, folds the
conditions into the summary state, and records how long node provisioning and workload
start-up took. Everything is pure: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kaito_api.conditions import Condition, ConditionReason, ConditionType, set_condition
from kaito_api.types import format_time

MESSAGE_LIMIT = 256


_PULL_ERRORS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
_START_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class PodProblem:
    """The most specific reason the workload's pods are not ready."""

    reason: str
    message: str
    pod: str


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _statuses(pod: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or ()
    yield from status.get("containerStatuses") or ()


def classify_pod(pod: Mapping[str, Any]) -> PodProblem | None:
    """The problem of one pod, most specific first: OOM > image pull > start error > crash
    loop > eviction > unschedulable. ``None`` when nothing is known to be wrong."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    status = pod.get("status") or {}
    found: dict[str, PodProblem] = {}
    for cs in _statuses(pod):
        cname = cs.get("name", "")
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        for term in (state.get("terminated") or {}, last.get("terminated") or {}):
            if term.get("reason") == "OOMKilled":
                msg = (
                    f"container {cname} of pod {name} was OOM-killed (exit {term.get('exitCode')})"
                )
                found.setdefault("ContainerOOMKilled", PodProblem("ContainerOOMKilled", msg, name))
        waiting = state.get("waiting") or {}
        reason, detail = waiting.get("reason", ""), waiting.get("message", "")
        if reason in _PULL_ERRORS:
            msg = f"pod {name} container {cname}: {reason}: {detail}"
            found.setdefault("ImagePullError", PodProblem("ImagePullError", msg, name))
        elif reason in _START_ERRORS:
            msg = f"pod {name} container {cname}: {reason}: {detail}"
            found.setdefault("ContainerStartError", PodProblem("ContainerStartError", msg, name))
        elif reason == "CrashLoopBackOff":
            last_term = last.get("terminated") or {}
            tail = last_term.get("message") or last_term.get("reason") or detail
            msg = (
                f"pod {name} container {cname} keeps crashing "
                f"(exit {last_term.get('exitCode', '?')}, "
                f"{cs.get('restartCount', 0)} restarts): {tail}"
            )
            found.setdefault(
                "ContainerCrashLoopBackOff", PodProblem("ContainerCrashLoopBackOff", msg, name)
            )
    for reason in (
        "ContainerOOMKilled",
        "ImagePullError",
        "ContainerStartError",
        "ContainerCrashLoopBackOff",
    ):
        if reason in found:
            return PodProblem(found[reason].reason, _short(found[reason].message), name)
    if status.get("reason") == "Evicted":
        message = str(status.get("message", ""))
        reason = (
            "NodeDiskPressure"
            if "disk" in message.lower() or "ephemeral" in message.lower()
            else "NodeMemoryPressure"
            if "memory" in message.lower()
            else "PodEvicted"
        )
        return PodProblem(reason, _short(f"pod {name} was evicted: {message}"), name)
    for cond in status.get("conditions") or ():
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return PodProblem(
                "Unschedulable", _short(f"pod {name}: {cond.get('message', '')}"), name
            )
    return None


def classify_pods(pods: Sequence[Mapping[str, Any]]) -> PodProblem | None:
    """The most severe problem among pods (same order as ``classify_pod``)."""
    order = [
        "ContainerOOMKilled",
        "ImagePullError",
        "ContainerStartError",
        "ContainerCrashLoopBackOff",
        "NodeDiskPressure",
        "NodeMemoryPressure",
        "PodEvicted",
        "Unschedulable",
    ]
    problems = [p for p in (classify_pod(pod) for pod in sorted(pods, key=_pod_name)) if p]
    problems.sort(key=lambda p: order.index(p.reason))
    return problems[0] if problems else None


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def workload_ready(workload: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether a Deployment/StatefulSet has rolled out and all replicas are ready."""
    if workload is None:
        return False, "waiting for the workload to be created"
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    want = int(spec.get("replicas", 1))
    gen = (workload.get("metadata") or {}).get("generation")
    if gen is not None and status.get("observedGeneration", 0) < gen:
        return False, f"{workload['kind']} rollout not yet observed by its controller"
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    if ready >= want and updated >= want:
        return True, f"{ready}/{want} replicas ready"
    return False, f"{ready}/{want} replicas ready, {updated}/{want} updated"


@dataclass(frozen=True)
class JobView:
    started: bool
    succeeded: bool
    failed: bool
    message: str


def job_state(job: Mapping[str, Any] | None) -> JobView:
    """Started / succeeded / failed from a Job's status (KAITO's rules, plus the Failed
    condition so that a Job still retrying is not reported as failed)."""
    if job is None:
        return JobView(False, False, False, "waiting for the tuning Job to be created")
    status = job.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or ()}
    if (conds.get("Failed") or {}).get("status") == "True":
        c = conds["Failed"]
        return JobView(
            True, False, True, _short(f"Job failed: {c.get('reason')}: {c.get('message', '')}")
        )
    if (conds.get("Complete") or {}).get("status") == "True" or int(
        status.get("succeeded", 0) or 0
    ) > 0:
        return JobView(True, True, False, "the tuning Job completed")
    active = int(status.get("active", 0) or 0) + int(status.get("ready", 0) or 0)
    if active > 0:
        return JobView(
            True,
            False,
            False,
            f"the tuning Job is running ({status.get('active', 0)} active pod(s))",
        )
    return JobView(False, False, False, "waiting for the tuning Job's pod to start")


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
                update={"message": _short(cond.message), "observed_generation": generation}
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
