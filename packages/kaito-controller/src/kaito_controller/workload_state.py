"""Why the workload is not ready, from the observed Pods, Deployment/StatefulSet and Job.

Why: the question users ask is "why is my Workspace not ready?". This module answers the part
about the workload from observed objects alone: it maps pod and container states
(Unschedulable, image pulls, crash loops, OOM kills, evictions) and Job states to specific
condition reasons. Turning those into Workspace conditions and the summary state is
``kaito_controller.status``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaito_controller.status import short_message as _short

_PULL_ERRORS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
_START_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class PodProblem:
    """The most specific reason the workload's pods are not ready."""

    reason: str
    message: str
    pod: str


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
