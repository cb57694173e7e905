"""One reconcile pass with I/O: read the Workspace, observe, ``plan``, execute the plan.

Why: this is the only place where the pure planner meets the API server. It runs the reads
``reconcile.observed.queries`` asks for, calls ``plan``, and performs the writes in a safe
order: add the finalizer before creating anything that needs cleaning up, delete before
re-creating, patch the status only when it changed, remove the finalizer last.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kaito_api.validation import WorkspaceInvalid, parse_workspace

from kaito_controller.k8s.client import KubeClient, Manifest, ObjectRef
from kaito_controller.naming import tuning_template_name
from kaito_controller.reconcile.identity import sanitized_match_labels
from kaito_controller.reconcile.observed import Observed, queries
from kaito_controller.reconcile.plan import EventSpec, Plan
from kaito_controller.reconcile.sizing import Catalog
from kaito_controller.reconcile.workspace import Context, plan, plan_invalid
from kaito_controller.settings import ControllerSettings
from kaito_controller.status import iso

logger = logging.getLogger(__name__)

WORKSPACE_API = "kaito.sh/v1beta1"


class Reconciler:
    """Observe-plan-execute for one Workspace key at a time (the queue serialises keys)."""

    def __init__(
        self,
        client: KubeClient,
        settings: ControllerSettings,
        catalog: Catalog,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.settings = settings
        self.catalog = catalog
        self.clock = clock
        self.passes = 0

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Run one pass. Returns when to look again (seconds), or None if the Workspace is gone."""
        self.passes += 1
        body = await self.client.get(ObjectRef(WORKSPACE_API, "Workspace", name, namespace))
        if body is None:
            return None
        try:
            ws = parse_workspace(body)
        except WorkspaceInvalid as err:
            await self._execute(body, plan_invalid(body, err.errors, now=self.clock()))
            return None
        referenced: list[tuple[str, str]] = []
        if ws.inference is not None and ws.inference.config:
            referenced.append((namespace, ws.inference.config))
        if ws.tuning is not None:
            if ws.tuning.config:
                referenced.append((namespace, ws.tuning.config))
            else:
                template = tuning_template_name(str(ws.tuning.method))
                referenced.append((self.settings.release_namespace, template))
        observed = await self.observe(
            name, namespace, sanitized_match_labels(ws), tuple(referenced)
        )
        result = plan(
            ws, observed, Context(settings=self.settings, catalog=self.catalog, now=self.clock())
        )
        await self._execute(body, result)
        return (
            result.requeue_after
            if result.requeue_after is not None
            else self.settings.resync_seconds
        )

    async def observe(
        self,
        name: str,
        namespace: str,
        match_labels: dict[str, str],
        referenced: tuple[tuple[str, str], ...],
    ) -> Observed:
        qs = queries(
            name=name,
            namespace=namespace,
            nap=self.settings.node_auto_provisioning,
            match_labels=match_labels,
            referenced=referenced,
        )

        async def run(q: Any) -> list[Manifest]:
            if q.name is not None:
                obj = await self.client.get(ObjectRef(q.api_version, q.kind, q.name, q.namespace))
                return [obj] if obj is not None else []
            return await self.client.list(
                q.api_version, q.kind, namespace=q.namespace, labels=q.labels
            )

        results = await asyncio.gather(*(run(q) for q in qs))
        fields: dict[str, Any] = {}
        refs: dict[str, Manifest] = {}
        for q, items in zip(qs, results, strict=True):
            if q.into == "referenced":
                for obj in items:
                    refs[f"{q.namespace}/{q.name}"] = obj
            else:
                fields[q.into] = tuple(items)
        return Observed(**fields, referenced=refs)

    async def _execute(self, body: Manifest, p: Plan) -> None:
        meta = body["metadata"]
        ref = ObjectRef(
            body.get("apiVersion", WORKSPACE_API), "Workspace", meta["name"], meta["namespace"]
        )
        old_finalizers = tuple(meta.get("finalizers") or ())
        adding = p.finalizers is not None and set(p.finalizers) - set(old_finalizers)
        if p.finalizers is not None and adding:
            await self.client.patch(
                ref,
                {
                    "metadata": {
                        "finalizers": list(p.finalizers),
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
        if p.delete_first:
            await self._delete(p.delete)
        # Independent objects: apply them concurrently (one round trip instead of several).
        await asyncio.gather(*(self.client.apply(m) for m in p.apply))
        if not p.delete_first:
            await self._delete(p.delete)
        if p.status is not None and dict(p.status) != (body.get("status") or {}):
            await self.client.patch_status(ref, p.status)
        await asyncio.gather(*(self._post_event(body, e) for e in p.events))
        if p.finalizers is not None and not adding:
            await self.client.patch(ref, {"metadata": {"finalizers": list(p.finalizers) or None}})

    async def _delete(self, refs: tuple[ObjectRef, ...]) -> None:
        await asyncio.gather(
            *(
                self.client.delete(r, propagation="Foreground" if r.kind == "Job" else "Background")
                for r in refs
            )
        )

    async def _post_event(self, body: Manifest, event: EventSpec) -> None:
        meta = body["metadata"]
        now = iso(self.clock())
        try:
            await self.client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "generateName": f"{meta['name']}.",
                        "namespace": meta["namespace"],
                    },
                    "involvedObject": {
                        "apiVersion": body.get("apiVersion", WORKSPACE_API),
                        "kind": "Workspace",
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "uid": meta.get("uid"),
                    },
                    "type": event.type,
                    "reason": event.reason,
                    "message": event.message[:1024],
                    "source": {"component": "kaito-controller"},
                    "reportingComponent": "kaito-controller",
                    "reportingInstance": socket.gethostname(),
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                }
            )
        except Exception as err:  # events are best effort; never fail a pass on them
            logger.warning(
                "posting event %s on %s/%s: %s", event.reason, meta["namespace"], meta["name"], err
            )
