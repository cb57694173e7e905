"""``plan``: one Workspace and what was observed in, the writes and the status out.

Why: this is the controller's decision logic, kept pure so that it can be tested as a table
of situations and so that running it twice on the same input gives the same answer (the
handler may crash and re-run a pass at any point). The flow per pass:

1. being deleted: delete the NodeClaims (cluster-scoped, so owner references cannot do it),
   then drop the finalizer; everything namespaced goes by owner reference.
2. add the finalizer; size the Workspace (preset, estimator); plan the nodes;
3. until the nodes are Ready with GPUs: report why not, and wait;
4. then the inference objects (ConfigMap, workload, Services) or the tuning Job;
5. conditions, summary state, phase durations and Events for every transition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kaito_api.conditions import (
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    new_condition,
)
from kaito_api.labels import ANNOTATION_NODE_IMAGE_FAMILY, FINALIZER_WORKSPACE, LABEL_WORKSPACE
from kaito_api.v1beta1 import Workspace
from kaito_presets.runtime import RUNTIME_FIELD, runtime_of

from kaito_controller.capacity import (
    ByoCapacity,
    CapacityRequest,
    CapacityStrategy,
    NodeClaimCapacity,
)
from kaito_controller.capacity.base import is_deleting, name_of, node_gpus
from kaito_controller.k8s.client import ObjectRef
from kaito_controller.reconcile import inference as inference_plan
from kaito_controller.reconcile import tuning as tuning_plan
from kaito_controller.reconcile.drift import needs_apply
from kaito_controller.reconcile.identity import sanitized_match_labels
from kaito_controller.reconcile.observed import Observed
from kaito_controller.reconcile.plan import EventSpec, Plan
from kaito_controller.reconcile.sizing import Catalog, Sizing, SpecError, gpu_node_info
from kaito_controller.settings import ControllerSettings
from kaito_controller.status import merge_conditions, phase_durations, summary_state

_QUIET_REASONS = {
    ConditionReason.INFERENCE_PENDING,
    ConditionReason.JOB_PENDING,
    ConditionReason.WORKSPACE_PENDING,
    ConditionReason.RESOURCE_NOT_READY,
    ConditionReason.NODE_CLAIM_NOT_READY,
    ConditionReason.NODE_NOT_READY,
    ConditionReason.RESOURCE_WAITING,
}


@dataclass(frozen=True)
class Context:
    """Inputs other than the Workspace and the observation."""

    settings: ControllerSettings
    catalog: Catalog
    now: datetime


def strategy_for(settings: ControllerSettings) -> CapacityStrategy:
    if settings.node_auto_provisioning:
        return NodeClaimCapacity(
            cloud_provider=settings.cloud_provider,
            node_image_family=settings.node_image_family,
            template=settings.nodeclaim_template,
        )
    return ByoCapacity()


def plan(ws: Workspace, observed: Observed, ctx: Context) -> Plan:
    """Decide this pass's writes for ``ws`` from ``observed``."""
    if ws.metadata.deletion_timestamp is not None:
        return _plan_deletion(ws, observed, ctx)
    finalizers = list(ws.metadata.finalizers or [])
    new_finalizers = None
    if FINALIZER_WORKSPACE not in finalizers:
        new_finalizers = (*finalizers, FINALIZER_WORKSPACE)
    kind = "tuning" if ws.tuning is not None else "inference"
    try:
        sizing = _size(ws, observed, ctx)
    except SpecError as err:
        return _plan_spec_error(ws, kind, err, new_finalizers, ctx)

    strategy = strategy_for(ctx.settings)
    target = _target_node_count(ws, sizing)
    req = CapacityRequest(
        ws_name=ws.name,
        ws_namespace=ws.namespace,
        ws_uid=ws.metadata.uid or "",
        node_count=target,
        gpus_per_node=sizing.gpus_per_node,
        gpu_resource=sizing.gpu_resource,
        instance_type=ws.resource.instance_type,
        match_labels=sanitized_match_labels(ws),
        disk=sizing.disk,
        node_image_family=_node_image_family(ws),
    )
    live_claims = [c for c in observed.nodeclaims if c]
    apply: list[dict[str, Any]] = list(strategy.plan_nodes(req, live_claims, observed.nodes))
    events = [
        EventSpec("Normal", "NodeClaimCreated", f"creating NodeClaim {name_of(c)}") for c in apply
    ]
    readiness = strategy.readiness(req, live_claims, observed.nodes)
    conds: list[Condition] = list(readiness.conditions)
    if readiness.ready:
        conds.append(
            new_condition(
                ConditionType.RESOURCE_READY,
                ConditionStatus.TRUE,
                ConditionReason.RESOURCE_READY,
                readiness.message,
            )
        )
    else:
        conds.append(
            new_condition(
                ConditionType.RESOURCE_READY,
                ConditionStatus.FALSE,
                readiness.reason,
                readiness.message,
            )
        )

    deletes: list[ObjectRef] = []
    delete_first = False
    requeue: float | None = None if readiness.ready else ctx.settings.not_ready_requeue_seconds
    affinity = strategy.node_affinity(req)
    if kind == "inference":
        out = inference_plan.plan_inference(
            ws, observed, sizing, target, affinity, ready=readiness.ready, settings=ctx.settings
        )
    else:
        out = tuning_plan.plan_tuning(
            ws, observed, sizing, affinity, ready=readiness.ready, settings=ctx.settings
        )
    apply.extend(m for m in out.apply if needs_apply(m, observed))
    deletes.extend(out.delete)
    delete_first = out.delete_first
    conds.extend(out.conditions)
    if out.requeue_after is not None:
        requeue = min(requeue or out.requeue_after, out.requeue_after)

    drop = () if ctx.settings.node_auto_provisioning else (ConditionType.NODE_CLAIM_READY,)
    status, transitions = _status(ws, kind, conds, target, readiness.worker_nodes, ctx, drop)
    return Plan(
        apply=tuple(apply),
        delete=tuple(deletes),
        status=status,
        finalizers=new_finalizers,
        events=(*events, *transitions),
        requeue_after=requeue,
        delete_first=delete_first,
    )


def _size(ws: Workspace, observed: Observed, ctx: Context) -> Sizing:
    gpu_node = None
    if not ctx.settings.node_auto_provisioning:
        for node in sorted(observed.nodes, key=name_of):
            labels = (node.get("metadata") or {}).get("labels") or {}
            gpu_node = gpu_node_info(labels, node_gpus(node))
            if gpu_node is not None:
                break
        if gpu_node is None and not observed.nodes:
            selector = ",".join(f"{k}={v}" for k, v in sanitized_match_labels(ws).items())
            raise SpecError(
                "resource.labelSelector",
                f"no node matches {selector}; label your GPU nodes or turn node "
                "auto-provisioning on",
                reason=ConditionReason.NODE_NOT_FOUND,
            )
    if ws.tuning is not None:
        return ctx.catalog.size_tuning(
            preset=ws.tuning.preset.name, instance_type=ws.resource.instance_type, gpu_node=gpu_node
        )
    assert ws.inference is not None
    if ws.inference.preset is None:
        raise SpecError(
            "inference.template", "custom pod templates are not supported yet; use a preset"
        )
    try:
        runtime = runtime_of(ws)
    except ValueError as err:
        raise SpecError(RUNTIME_FIELD, str(err)) from err
    try:
        max_len = inference_plan.user_config(ws, observed).get("max_model_len")
    except inference_plan.ConfigProblem:
        max_len = None  # reported on InferenceReady by plan_inference
    return ctx.catalog.size_inference(
        preset=ws.inference.preset.name,
        instance_type=ws.resource.instance_type,
        gpu_node=gpu_node,
        runtime=runtime,
        max_model_len=max_len if isinstance(max_len, int) else None,
        count=ws.resource.count,
        partition=ws.resource.partition,
    )


def _node_image_family(ws: Workspace) -> str | None:
    """The Workspace's ``kaito.sh/node-image-family`` (validated at admission), lower-cased."""
    value = (ws.metadata.annotations or {}).get(ANNOTATION_NODE_IMAGE_FAMILY)
    return value.strip().lower() if value and value.strip() else None


def _target_node_count(ws: Workspace, sizing: Sizing) -> int:
    """Estimated once: a count already recorded in status wins, so a catalog update never
    resizes a running Workspace (NodeClaims are never scaled down)."""
    recorded = (ws.status.target_node_count if ws.status else None) or 0
    return recorded if recorded > 0 else max(1, sizing.node_count)


def _status(
    ws: Workspace,
    kind: str,
    conds: Sequence[Condition],
    target: int,
    workers: Sequence[str],
    ctx: Context,
    drop: Sequence[str] = (),
) -> tuple[dict[str, Any], list[EventSpec]]:
    old_status = (
        ws.status.model_dump(mode="json", by_alias=True, exclude_none=True) if ws.status else {}
    )
    old_conds = old_status.get("conditions") or []
    by_type = {c.type: c for c in conds}
    summary = _summary_conditions(kind, by_type)
    all_conds = [*conds, *summary]
    by_type = {c.type: c for c in all_conds}
    merged = merge_conditions(
        old_conds, all_conds, now=ctx.now, generation=ws.metadata.generation, drop=drop
    )
    was_true = {c.get("type"): c.get("status") == "True" for c in old_conds}
    status: dict[str, Any] = {
        **old_status,
        "conditions": merged,
        "state": summary_state(kind, by_type, old_status.get("state")),
        "targetNodeCount": target,
        "workerNodes": list(workers) if workers else old_status.get("workerNodes", []),
        "observedGeneration": ws.metadata.generation,
    }
    durations = phase_durations(
        old_status.get("phaseDurations"),
        created=ws.metadata.creation_timestamp,
        conditions=merged,
        now=ctx.now,
        was_true=was_true,
    )
    if durations:
        status["phaseDurations"] = durations
    status = {k: v for k, v in status.items() if v is not None}
    return status, _transition_events(old_conds, all_conds)


def _summary_conditions(kind: str, by_type: Mapping[str, Condition]) -> list[Condition]:
    if kind == "inference":
        inf = by_type.get(ConditionType.INFERENCE_READY)
        if inf is not None and inf.is_true:
            ok = new_condition(
                ConditionType.WORKSPACE_SUCCEEDED,
                ConditionStatus.TRUE,
                ConditionReason.WORKSPACE_SUCCEEDED,
                "the model is being served",
            )
            return [
                ok,
                new_condition(
                    ConditionType.WORKSPACE_READY,
                    ConditionStatus.TRUE,
                    ConditionReason.WORKSPACE_READY,
                    ok.message,
                ),
            ]
        why = inf.message if inf else "waiting"
        return [
            new_condition(
                ConditionType.WORKSPACE_SUCCEEDED,
                ConditionStatus.FALSE,
                ConditionReason.WORKSPACE_PENDING,
                why,
            ),
            new_condition(
                ConditionType.WORKSPACE_READY,
                ConditionStatus.FALSE,
                ConditionReason.WORKSPACE_NOT_READY,
                why,
            ),
        ]
    return []  # tuning: plan_tuning sets WorkspaceSucceeded itself


def _transition_events(
    old: Sequence[Mapping[str, Any]], new: Sequence[Condition]
) -> list[EventSpec]:
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    events = []
    for cond in new:
        if cond.type in (ConditionType.WORKSPACE_READY,):
            continue  # mirrors WorkspaceSucceeded; one event is enough
        if before.get(cond.type) == (cond.status, cond.reason):
            continue
        if cond.is_true:
            events.append(EventSpec("Normal", cond.type, cond.message or cond.reason))
        elif cond.reason not in _QUIET_REASONS:
            events.append(EventSpec("Warning", cond.reason, f"{cond.type}: {cond.message}"))
    return events


def _plan_spec_error(
    ws: Workspace,
    kind: str,
    err: SpecError,
    finalizers: tuple[str, ...] | None,
    ctx: Context,
) -> Plan:
    message = str(err)
    conds = [
        new_condition(ConditionType.RESOURCE_READY, ConditionStatus.FALSE, err.reason, message)
    ]
    if kind == "inference":
        conds.append(
            new_condition(
                ConditionType.INFERENCE_READY,
                ConditionStatus.FALSE,
                ConditionReason.INFERENCE_PENDING,
                message,
            )
        )
    else:
        conds.append(
            new_condition(
                ConditionType.JOB_STARTED,
                ConditionStatus.FALSE,
                ConditionReason.JOB_PENDING,
                message,
            )
        )
        conds.append(
            new_condition(
                ConditionType.WORKSPACE_SUCCEEDED,
                ConditionStatus.FALSE,
                ConditionReason.WORKSPACE_PENDING,
                message,
            )
        )
    target = (ws.status.target_node_count if ws.status else None) or 0
    status, events = _status(ws, kind, conds, target, [], ctx)
    # A spec error only changes with the spec (a new event) or with the nodes (BYO): poll slowly.
    return Plan(
        status=status,
        finalizers=finalizers,
        events=tuple(events),
        requeue_after=ctx.settings.resync_seconds,
    )


def _plan_deletion(ws: Workspace, observed: Observed, ctx: Context) -> Plan:
    finalizers = list(ws.metadata.finalizers or [])
    claims = [
        c
        for c in observed.nodeclaims
        if ((c.get("metadata") or {}).get("labels") or {}).get(LABEL_WORKSPACE) == ws.name
    ]
    to_delete = tuple(
        ObjectRef("karpenter.sh/v1", "NodeClaim", name_of(c)) for c in claims if not is_deleting(c)
    )
    old = ws.status.model_dump(mode="json", by_alias=True, exclude_none=True) if ws.status else {}
    conds = merge_conditions(
        old.get("conditions"),
        [
            new_condition(
                ConditionType.WORKSPACE_DELETING,
                ConditionStatus.TRUE,
                ConditionReason.WORKSPACE_DELETED,
                "deleting the workspace's nodes and workloads",
            )
        ],
        now=ctx.now,
        generation=ws.metadata.generation,
    )
    status = {**old, "conditions": conds}
    new_finalizers = None
    if FINALIZER_WORKSPACE in finalizers:
        # Delete requests are issued in this pass; the finalizer goes in the same pass (as
        # KAITO does): the provisioner's own finalizer on each NodeClaim guarantees the
        # machines are released even after the Workspace is gone.
        new_finalizers = tuple(f for f in finalizers if f != FINALIZER_WORKSPACE)
    events = (
        EventSpec("Normal", "NodeClaimDeleted", f"deleting NodeClaim {r.name}") for r in to_delete
    )
    return Plan(delete=to_delete, status=status, finalizers=new_finalizers, events=tuple(events))


def plan_invalid(body: Mapping[str, Any], errors: Sequence[object], *, now: datetime) -> Plan:
    """A Workspace the API models reject (it got past admission, e.g. the webhook was off):
    report every field error on ResourceReady and do nothing else."""
    message = "; ".join(str(e) for e in errors) or "invalid Workspace"
    old = dict(body.get("status") or {})
    meta = body.get("metadata") or {}
    conds = merge_conditions(
        old.get("conditions"),
        [
            new_condition(
                ConditionType.RESOURCE_READY,
                ConditionStatus.FALSE,
                ConditionReason.INVALID_SPEC,
                message,
            )
        ],
        now=now,
        generation=meta.get("generation"),
    )
    status = {**old, "conditions": conds, "state": old.get("state") or "Pending"}
    return Plan(
        status=status, events=(EventSpec("Warning", ConditionReason.INVALID_SPEC, message),)
    )
