"""Thin kopf handlers for ``nodeclaims.v1.karpenter.sh``; all logic is in `controller`.

Why: kopf is the delivery mechanism, not the logic. Handlers are registered on an explicit
registry by `register` (nothing happens at import time) and only translate controller outcomes
into kopf retries:

* create/resume -> `NodeClaimController.reconcile`, retried (``TemporaryError``) until Ready;
* a timer re-checks Ready claims (node vanished, capacity gone);
* delete -> `NodeClaimController.terminate` under the Karpenter finalizer
  ``karpenter.sh/termination`` (kopf's own finalizer name is replaced by it in `configure`);
* a background task collects orphaned capacity every ``gc_interval_seconds``.

Only NodeClaims this provisioner manages (KaitoNodeClass, or a KAITO workspace/ragengine label)
are touched; others, e.g. Azure Karpenter's, are filtered out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from kaito_gpu_provisioner.claims import FINALIZER, GROUP, PLURAL, VERSION, is_managed
from kaito_gpu_provisioner.controller import NodeClaimController
from kaito_gpu_provisioner.lifecycle import READY
from kaito_gpu_provisioner.metrics import ProvisionerMetrics
from kaito_gpu_provisioner.settings import Settings

logger = logging.getLogger(__name__)
ANNOTATION_PREFIX = "provisioner.kaito.sh"
RESOURCE = (GROUP, VERSION, PLURAL)


def _managed(body: kopf.Body, **_: Any) -> bool:
    return is_managed(body)


def _ready(body: kopf.Body, **_: Any) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return is_managed(body) and any(
        c.get("type") == READY and c.get("status") == "True" for c in conditions
    )


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings: Karpenter's finalizer, our annotation prefix, Events for warnings only."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # Resolve nodeclaims.karpenter.sh once at startup instead of watching every CRD in the
    # cluster: that would need list/watch on customresourcedefinitions in the ClusterRole.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.batching.worker_limit = 200


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Register every handler on ``registry`` (the controller comes from ``memo.controller``)."""
    gc_interval = settings.gc_interval_seconds

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount token; elsewhere: $KUBECONFIG / ~/.kube/config.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        memo.gc_task = asyncio.create_task(_gc_loop(memo.controller, gc_interval))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("gc_task")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for close in memo.get("closers", []):
            await close()

    @kopf.on.probe(id="provisioner", registry=registry)
    def provisioner_calls(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        # The NodeProvisioner's calls, seconds and errors by reason, on /healthz.
        metrics: ProvisionerMetrics | None = memo.get("metrics")
        return metrics.summary() if metrics is not None else {}

    @kopf.on.resume(*RESOURCE, registry=registry, when=_managed)
    @kopf.on.create(*RESOURCE, registry=registry, when=_managed)
    async def launch(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        controller: NodeClaimController = memo.controller
        outcome = await controller.reconcile(body)
        if not outcome.ready:
            raise kopf.TemporaryError(outcome.message, delay=outcome.requeue_after)

    @kopf.timer(
        *RESOURCE,
        registry=registry,
        when=_ready,
        interval=settings.resync_interval_seconds,
        initial_delay=settings.resync_interval_seconds,
    )
    async def resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await memo.controller.reconcile(body)

    @kopf.on.delete(*RESOURCE, registry=registry, when=_managed)
    async def terminate(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        controller: NodeClaimController = memo.controller
        delay = await controller.terminate(body)
        if delay is not None:
            raise kopf.TemporaryError("capacity is still being deleted", delay=delay)


async def _gc_loop(controller: NodeClaimController, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            collected = await controller.collect_garbage()
        except Exception:  # boundary: GC must survive any single failure
            logger.exception("garbage collection failed; retrying in %ss", interval)
            continue
        if collected:
            logger.info("garbage-collected orphaned capacity: %s", ", ".join(collected))
