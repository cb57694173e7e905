"""Why is it not ready: pod/container states map to specific reasons; Job states; conditions.

Matrix (classify_pod): OOMKilled, ImagePullBackOff (main or init), CreateContainerConfigError,
CrashLoopBackOff with the last termination message, eviction for disk / memory / other,
Unschedulable, a healthy pod; and the precedence when several apply.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kaito_api.conditions import Condition, new_condition

from kaito_controller.status import merge_conditions, phase_durations, summary_state
from kaito_controller.workload_state import classify_pod, classify_pods, job_state, workload_ready


def pod(name: str = "p", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


def waiting(reason: str, message: str = "", *, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    return {key: [{"name": "c", "state": {"waiting": {"reason": reason, "message": message}}}]}


CASES = [
    (
        pod(**waiting("ImagePullBackOff", "Back-off pulling image x")),
        "ImagePullError",
        "Back-off pulling",
    ),
    (pod(**waiting("ErrImagePull", init=True)), "ImagePullError", "ErrImagePull"),
    (
        pod(**waiting("CreateContainerConfigError", "secret s not found")),
        "ContainerStartError",
        "secret s",
    ),
    (
        pod(
            containerStatuses=[
                {
                    "name": "c",
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "message": "CUDA error: no device"}
                    },
                }
            ]
        ),
        "ContainerCrashLoopBackOff",
        "CUDA error: no device",
    ),
    (
        pod(
            containerStatuses=[
                {"name": "c", "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
            ]
        ),
        "ContainerOOMKilled",
        "OOM-killed",
    ),
    (
        pod(reason="Evicted", message="The node was low on resource: ephemeral-storage."),
        "NodeDiskPressure",
        "ephemeral",
    ),
    (
        pod(reason="Evicted", message="The node was low on resource: memory."),
        "NodeMemoryPressure",
        "memory",
    ),
    (pod(reason="Evicted", message="preempted"), "PodEvicted", "preempted"),
    (
        pod(
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ]
        ),
        "Unschedulable",
        "Insufficient nvidia.com/gpu",
    ),
]


@pytest.mark.parametrize(("p", "reason", "fragment"), CASES)
def test_classify_pod(p: dict[str, Any], reason: str, fragment: str) -> None:
    problem = classify_pod(p)
    assert problem is not None
    assert problem.reason == reason
    assert fragment in problem.message


def test_healthy_pod_has_no_problem() -> None:
    assert (
        classify_pod(pod(phase="Running", conditions=[{"type": "Ready", "status": "True"}])) is None
    )


def test_oom_beats_crash_loop_and_messages_are_capped() -> None:
    both = pod(
        containerStatuses=[
            {
                "name": "c",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {"reason": "OOMKilled", "exitCode": 137, "message": "x" * 1000}
                },
            }
        ]
    )
    problem = classify_pod(both)
    assert problem is not None and problem.reason == "ContainerOOMKilled"
    crash = classify_pods([pod("a", **waiting("ImagePullBackOff")), both])
    assert crash is not None and crash.reason == "ContainerOOMKilled" and crash.pod == "p"
    long = classify_pod(pod(**waiting("ErrImagePull", "y" * 1000)))
    assert long is not None and len(long.message) <= 256


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (None, (False, False, False)),
        ({}, (False, False, False)),
        ({"active": 1}, (True, False, False)),
        ({"succeeded": 1}, (True, True, False)),
        ({"failed": 1, "active": 1}, (True, False, False)),  # still retrying: not failed yet
        (
            {
                "failed": 3,
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                ],
            },
            (True, False, True),
        ),
    ],
)
def test_job_state(status: dict[str, Any] | None, want: tuple[bool, bool, bool]) -> None:
    job = None if status is None else {"status": status}
    view = job_state(job)
    assert (view.started, view.succeeded, view.failed) == want


def test_workload_ready_needs_observed_generation_and_ready_replicas() -> None:
    d = {"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 1}}
    assert not workload_ready(None)[0]
    assert not workload_ready(
        {**d, "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}}
    )[0]
    assert workload_ready(
        {**d, "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}
    )[0]


T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_merge_conditions_keeps_transition_time_when_status_unchanged() -> None:
    first = merge_conditions(
        [], [new_condition("ResourceReady", "False", "A", "m")], now=T0, generation=1
    )
    later = T0 + timedelta(minutes=5)
    second = merge_conditions(
        first, [new_condition("ResourceReady", "False", "B", "n")], now=later, generation=1
    )
    assert second[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert second[0]["reason"] == "B"
    third = merge_conditions(
        second, [new_condition("ResourceReady", "True", "C")], now=later, generation=2
    )
    assert third[0]["lastTransitionTime"] != first[0]["lastTransitionTime"]
    assert merge_conditions(third, [], now=later, generation=2, drop=["ResourceReady"]) == []


def test_phase_durations_are_recorded_once() -> None:
    conds = merge_conditions(
        [],
        [new_condition("ResourceReady", "True", "ok")],
        now=T0 + timedelta(seconds=30),
        generation=1,
    )
    got = phase_durations(
        None, created=T0, conditions=conds, now=T0 + timedelta(seconds=30.5), was_true={}
    )
    assert got == {"nodeProvisioning": 30.5}
    conds = merge_conditions(
        conds,
        [new_condition("InferenceReady", "True", "ok")],
        now=T0 + timedelta(seconds=42),
        generation=1,
    )
    got = phase_durations(
        got,
        created=T0,
        conditions=conds,
        now=T0 + timedelta(seconds=42),
        was_true={"ResourceReady": True},
    )
    assert got == {"nodeProvisioning": 30.5, "workloadReady": 12.0}
    again = phase_durations(
        got,
        created=T0,
        conditions=conds,
        now=T0 + timedelta(hours=1),
        was_true={"ResourceReady": True, "InferenceReady": True},
    )
    assert again == got


@pytest.mark.parametrize(
    ("kind", "conds", "previous", "want"),
    [
        (
            "inference",
            {"WorkspaceSucceeded": new_condition("WorkspaceSucceeded", "True", "x")},
            None,
            "Ready",
        ),
        ("inference", {}, None, "Pending"),
        ("inference", {}, "Ready", "NotReady"),
        ("tuning", {"JobStarted": new_condition("JobStarted", "True", "x")}, None, "Running"),
        (
            "tuning",
            {"WorkspaceSucceeded": new_condition("WorkspaceSucceeded", "False", "WorkspaceFailed")},
            "Running",
            "Failed",
        ),
        (
            "tuning",
            {"WorkspaceSucceeded": new_condition("WorkspaceSucceeded", "True", "x")},
            "Running",
            "Succeeded",
        ),
    ],
)
def test_summary_state(
    kind: str, conds: dict[str, Condition], previous: str | None, want: str
) -> None:
    assert summary_state(kind, conds, previous) == want
