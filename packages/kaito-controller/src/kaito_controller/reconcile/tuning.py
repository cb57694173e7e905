"""The tuning half of a pass: config, Job, JobStarted and WorkspaceSucceeded.

Why: a Job's pod template is immutable, so a change of input or output replaces the Job
(deleted in the foreground, re-created in a later pass). The default tuning template is copied
from the release namespace into an owned ConfigMap, so it is removed with the Workspace
(KAITO leaves its copy behind).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaito_api.conditions import (
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    new_condition,
)
from kaito_api.v1beta1 import Workspace

from kaito_controller.k8s.client import ObjectRef
from kaito_controller.manifests.tuning import (
    CONFIG_FILE,
    TuningParams,
    build_tuning_configmap,
    build_tuning_job,
)
from kaito_controller.naming import tuning_configmap_name, tuning_template_name
from kaito_controller.reconcile.common import SubPlan
from kaito_controller.reconcile.drift import ANNOTATION_APPLIED_HASH, stamp
from kaito_controller.reconcile.identity import ws_ref
from kaito_controller.reconcile.observed import Observed
from kaito_controller.reconcile.sizing import Sizing, workload_image
from kaito_controller.settings import ControllerSettings
from kaito_controller.workload_state import classify_pods, job_state


def _pending(reason: str, message: str, requeue: float | None = None) -> SubPlan:
    return SubPlan(
        conditions=[
            new_condition(ConditionType.JOB_STARTED, ConditionStatus.FALSE, reason, message),
            new_condition(
                ConditionType.WORKSPACE_SUCCEEDED,
                ConditionStatus.FALSE,
                ConditionReason.WORKSPACE_PENDING,
                message,
            ),
        ],
        requeue_after=requeue,
    )


def plan_tuning(
    ws: Workspace,
    observed: Observed,
    sizing: Sizing,
    affinity: Sequence[Mapping[str, Any]],
    *,
    ready: bool,
    settings: ControllerSettings,
) -> SubPlan:
    assert ws.tuning is not None
    if not ready:
        return _pending(ConditionReason.JOB_PENDING, "waiting for the GPU nodes to be ready")
    t = ws.tuning
    ref = ws_ref(ws)
    objects: list[dict[str, Any]] = []
    if t.config:
        cm = observed.referenced.get(f"{ws.namespace}/{t.config}")
        if cm is None or CONFIG_FILE not in (cm.get("data") or {}):
            why = "not found" if cm is None else f"has no key {CONFIG_FILE!r}"
            return _pending(
                "TuningConfigInvalid",
                f"tuning.config: ConfigMap {t.config!r} {why}",
                settings.resync_seconds,
            )
        config_map = t.config
    else:
        template = tuning_template_name(str(t.method))
        src = observed.referenced.get(f"{settings.release_namespace}/{template}")
        if src is None:
            return _pending(
                "TuningTemplateNotFound",
                f"default template ConfigMap {template!r} is missing in "
                f"{settings.release_namespace}; reinstall the chart",
                settings.resync_seconds,
            )
        config_map = tuning_configmap_name(ws.name)
        objects.append(build_tuning_configmap(ref, config_map, src.get("data") or {}))
    src_in, out = t.input, t.output
    params = TuningParams(
        image=workload_image(
            settings.tuning_image, sizing.image, smoke_test=bool(settings.model_override)
        ),
        image_pull_policy=settings.image_pull_policy,
        model=settings.model_override or sizing.model,
        model_name=t.preset.name,
        method=str(t.method),
        config_map=config_map,
        gpus=sizing.gpus_per_node,
        input_urls=tuple(src_in.urls or ()),
        input_image=src_in.image,
        input_pull_secrets=tuple(src_in.image_pull_secrets or ()),
        input_volume=src_in.volume_source,
        output_image=out.image,
        output_push_secret=out.image_push_secret,
        output_volume=out.volume_source,
        model_access_secret=t.preset.preset_options.model_access_secret
        if t.preset.preset_options
        else None,
        node_affinity=tuple(affinity),
        plain_http_registry=settings.registry_plain_http,
        # The override is a path in the inference image (or a Hugging Face id to download).
        weights_image=(settings.model_override_image or settings.inference_image)
        if _is_path(settings.model_override)
        else None,
    )
    job = stamp(build_tuning_job(ref, params))
    objects = [stamp(o) for o in objects]
    have = observed.owned("Job", ws.name)
    want_hash = job["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
    if (
        have is not None
        and ((have.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_APPLIED_HASH)
        != want_hash
    ):
        if (have.get("metadata") or {}).get("deletionTimestamp"):
            return _pending(
                ConditionReason.JOB_PENDING,
                "waiting for the previous tuning Job to be deleted",
                2.0,
            )
        return SubPlan(
            apply=objects,
            delete=[ObjectRef("batch/v1", "Job", ws.name, ws.namespace)],
            conditions=_pending(
                ConditionReason.JOB_PENDING,
                "the tuning input or output changed: replacing the Job",
            ).conditions,
            requeue_after=2.0,
            delete_first=True,
        )
    apply = [*objects, job] if have is None else objects
    return SubPlan(
        apply=apply,
        conditions=_job_conditions(have, observed),
        requeue_after=_requeue(have, settings),
    )


def _requeue(job: Mapping[str, Any] | None, settings: ControllerSettings) -> float | None:
    view = job_state(job)
    return None if view.succeeded or view.failed else settings.not_ready_requeue_seconds


def _running(started: str, reason: str, message: str) -> list[Condition]:
    """JobStarted=True, and WorkspaceSucceeded=False with ``reason``: the Job still runs."""
    return [
        new_condition(
            ConditionType.JOB_STARTED, ConditionStatus.TRUE, ConditionReason.JOB_STARTED, started
        ),
        new_condition(ConditionType.WORKSPACE_SUCCEEDED, ConditionStatus.FALSE, reason, message),
    ]


def _job_conditions(job: Mapping[str, Any] | None, observed: Observed) -> list[Condition]:
    view = job_state(job)
    if view.failed:
        detail = _termination_message(observed) or view.message
        return [
            new_condition(
                ConditionType.JOB_STARTED, ConditionStatus.FALSE, ConditionReason.JOB_FAILED, detail
            ),
            new_condition(
                ConditionType.WORKSPACE_SUCCEEDED,
                ConditionStatus.FALSE,
                ConditionReason.WORKSPACE_FAILED,
                detail,
            ),
        ]
    if view.succeeded:
        return [
            new_condition(
                ConditionType.JOB_STARTED,
                ConditionStatus.TRUE,
                ConditionReason.JOB_STARTED,
                "the tuning Job started",
            ),
            new_condition(
                ConditionType.WORKSPACE_SUCCEEDED,
                ConditionStatus.TRUE,
                ConditionReason.WORKSPACE_SUCCEEDED,
                view.message,
            ),
        ]
    if view.started:
        failed_attempt = _termination_message(observed)
        if failed_attempt:
            retrying = f"a tuning pod failed, the Job retries: {failed_attempt}"
            return _running(view.message, ConditionReason.JOB_RETRYING, retrying)
        return _running(view.message, ConditionReason.WORKSPACE_PENDING, view.message)
    problem = classify_pods(observed.pods)
    if problem is not None:
        return _pending(problem.reason, problem.message).conditions
    return _pending(ConditionReason.JOB_PENDING, view.message).conditions


def _termination_message(observed: Observed) -> str | None:
    """The termination message of the newest failed container of the Job's pods: the data
    fetcher's or weights copier's (init containers) or the tuning container's (it starts with
    the failure reason)."""
    pods = sorted(
        observed.pods,
        key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp", "")),
        reverse=True,
    )
    for pod in pods:
        status = pod.get("status") or {}
        for cs in (
            *(status.get("initContainerStatuses") or ()),
            *(status.get("containerStatuses") or ()),
        ):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("exitCode") not in (None, 0):
                text = (term.get("message") or term.get("reason") or "").strip()
                return f"container {cs.get('name')} exited {term.get('exitCode')}: {text}"
    return None


def _is_path(model: str | None) -> bool:
    return bool(model) and str(model).startswith("/")
