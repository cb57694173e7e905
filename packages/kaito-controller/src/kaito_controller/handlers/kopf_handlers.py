"""The kopf handlers: start-up/clean-up, the Workspace watch, the admission webhook; the
server-side filtered watches of everything else; leader election.

Why: kopf gives us the webhook server, the process life cycle and the Workspace watch;
reconciliation itself happens in the workers of ``engine.workers``. Every watch handler is a
few lines: record the object in the read cache and enqueue the Workspace it concerns. Using
``on.event`` (not ``on.create``/``on.update``) keeps kopf from writing its own annotations and
finalizers on our objects: the controller's state lives in the Workspace status only. The
kinds we only care about when they carry our labels (Pods, ConfigMaps, Jobs, ...) are watched
by ``k8s.watching`` instead, because kopf would stream all of them and filter on the client.

Every replica watches (its cache stays warm) and serves the webhook; only the elected leader
runs the reconcile workers, and a leader that misses its renew deadline stops at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from kaito_api.labels import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito_api.leader_election import LeaderElector

from kaito_controller.engine.workers import Runtime
from kaito_controller.handlers.watches import Watch, watches
from kaito_controller.k8s.client import KubeError, Manifest, ObjectRef
from kaito_controller.k8s.watching import ScopedWatch, ScopedWatches, WatchSource
from kaito_controller.settings import ControllerSettings
from kaito_controller.webhook.admission import (
    admission_errors,
    admission_warnings,
    configmaps_to_check,
    denial_message,
)
from kaito_controller.webhook.server import CertManager

logger = logging.getLogger(__name__)
WEBHOOK_ID = "validate-workspace"  # the URL path the ValidatingWebhookConfiguration calls


def register(registry: kopf.OperatorRegistry, settings: ControllerSettings) -> None:
    """Register every handler on ``registry`` (nothing is registered at import time)."""
    _register_lifecycle(registry)
    for w in watches(settings):
        if not w.scoped:
            _register_watch(registry, w)
    if settings.webhook_enabled:
        _register_webhook(registry)


def _register_lifecycle(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster token or $KUBECONFIG, through the kubernetes package (as our own client).
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        cfg: ControllerSettings = memo.settings
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        # API calls run in threads (the kubernetes client is blocking): enough for all workers.
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=cfg.workers * 4)
        )
        # Campaign first: a follower waits for the leader's webhook certificate below.
        elector: LeaderElector | None = getattr(memo, "elector", None)
        primed = asyncio.Event()

        async def lead() -> None:
            await primed.wait()  # the cache holds complete reads before the first pass
            runtime.start(cfg.workers)

        if elector is not None:
            memo.election = asyncio.create_task(
                elector.run(on_started_leading=lead, on_stopped_leading=memo.on_leadership_lost),
                name="leader-election",
            )
        if cfg.webhook_enabled:
            certs = CertManager(
                runtime.reconciler.client,
                cfg,
                may_generate=lambda: elector is None or elector.is_leader,
            )
            await certs.ensure_when_available()
            settings.admission.server = kopf.WebhookServer(
                addr=cfg.webhook_listen_address,
                port=cfg.webhook_port,
                certfile=str(certs.certfile),
                pkeyfile=str(certs.keyfile),
                file_check_interval=30,
            )
            memo.rotation = asyncio.create_task(certs.run_rotation())
        source: WatchSource | None = getattr(memo, "watch_source", None)
        if source is not None:
            memo.scoped = start_scoped_watches(source, cfg, runtime)
        if runtime.cache is not None:
            await runtime.cache.prime()
        primed.set()
        if elector is None:
            await lead()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        for name in ("rotation", "election"):
            if task := getattr(memo, name, None):
                task.cancel()
        if scoped := getattr(memo, "scoped", None):
            scoped.stop()
        await memo.runtime.stop()
        if elector := getattr(memo, "elector", None):
            await elector.release()  # after the workers stopped: hand over without a wait


def _register_watch(registry: kopf.OperatorRegistry, w: Watch) -> None:
    labels = {key: kopf.PRESENT for key in w.required_labels} or None

    @kopf.on.event(
        w.group, w.version, w.plural, labels=labels, registry=registry, id=f"watch-{w.plural}"
    )
    def on_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        handle_event(w, str(event.get("type")), dict(event["object"]), memo.runtime)


def handle_event(w: Watch, event_type: str, obj: Manifest, runtime: Runtime) -> None:
    """Record a watched object in the cache and wake the Workspaces it concerns."""
    if runtime.cache is not None:
        runtime.cache.observe(obj, deleted=event_type == "DELETED")
    for key in _keys(w, obj, runtime):
        runtime.queue.add(key)


def start_scoped_watches(
    source: WatchSource, settings: ControllerSettings, runtime: Runtime
) -> ScopedWatches:
    """Start a server-side filtered watch per scoped kind; events reach the event loop."""
    loop = asyncio.get_running_loop()

    def deliver_to_loop(w: Watch) -> Callable[[str, Manifest], None]:
        def deliver(event_type: str, obj: Manifest) -> None:
            loop.call_soon_threadsafe(handle_event, w, event_type, obj, runtime)

        return deliver

    scoped = ScopedWatches(
        [
            ScopedWatch(source, w.api_version, w.kind, w.selector, deliver_to_loop(w))
            for w in watches(settings)
            if w.scoped
        ]
    )
    scoped.start()
    return scoped


def _keys(w: Watch, obj: Mapping[str, Any], runtime: Runtime) -> list[tuple[str, str]]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if w.maps_to == "self":
        key = (meta.get("namespace") or "", meta.get("name") or "")
        selector = ((obj.get("resource") or {}).get("labelSelector") or {}).get("matchLabels")
        runtime.selectors[key] = dict(selector or {})
        return [key]
    if w.maps_to == "owner-label":
        return [(meta.get("namespace") or "", labels[LABEL_WORKSPACE])]
    if w.maps_to == "cluster-labels":
        return [(labels[LABEL_WORKSPACE_NAMESPACE], labels[LABEL_WORKSPACE])]
    return [  # byo: every Workspace whose selector this node matches
        key
        for key, selector in list(runtime.selectors.items())
        if selector and all(labels.get(k) == v for k, v in selector.items())
    ]


def _register_webhook(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.validate("kaito.sh", "v1beta1", "workspaces", id=WEBHOOK_ID, registry=registry)
    async def validate_workspace(
        body: kopf.Body,
        old: Any,
        memo: kopf.Memo,
        subresource: str | None,
        warnings: list[str],
        **_: Any,
    ) -> None:
        if subresource:  # status updates are the controller's own
            return
        runtime: Runtime = memo.runtime
        previous = dict(old) if old else None
        configmaps = await _read_configmaps(runtime, dict(body), previous)
        errors = admission_errors(
            dict(body),
            previous,
            nap_enabled=memo.settings.node_auto_provisioning,
            configmaps=configmaps,
        )
        if errors:
            raise kopf.AdmissionError(denial_message(errors), code=422)
        warnings.extend(admission_warnings(dict(body)))


async def _read_configmaps(
    runtime: Runtime, body: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, dict[str, Any] | None]:
    """The ConfigMaps admission checks, read with ``get`` in the Workspace's namespace. One
    that cannot be read (no permission, API error) is left out, and so not checked."""
    namespace, names = configmaps_to_check(body, old)
    found: dict[str, dict[str, Any] | None] = {}
    if not namespace:
        return found
    for name in names:
        try:
            found[name] = await runtime.reconciler.client.get(
                ObjectRef("v1", "ConfigMap", name, namespace)
            )
        except KubeError as err:
            logger.warning("admission: cannot read ConfigMap %s/%s: %s", namespace, name, err)
    return found
