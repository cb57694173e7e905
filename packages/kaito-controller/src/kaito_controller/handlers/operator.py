"""The kopf handlers: watches that feed the cache and wake the queue, start-up/clean-up, and
the admission webhook.

Why: kopf gives us watches, the webhook server and the process life cycle; reconciliation
itself happens in the workers of ``handlers.runtime``. Every watch handler is a few lines:
record the object in the read cache and enqueue the Workspace it concerns. Using ``on.event``
(not ``on.create``/``on.update``) keeps kopf from writing its own annotations and finalizers
on our objects: the controller's state lives in the Workspace status only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kaito_api.labels import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE

from kaito_controller.handlers.runtime import Runtime
from kaito_controller.handlers.watches import Watch, watches
from kaito_controller.settings import ControllerSettings
from kaito_controller.webhook.admission import admission_errors, denial_message
from kaito_controller.webhook.server import CertManager

logger = logging.getLogger(__name__)
WEBHOOK_ID = "validate-workspace"  # the URL path the ValidatingWebhookConfiguration calls


def register(registry: kopf.OperatorRegistry, settings: ControllerSettings) -> None:
    """Register every handler on ``registry`` (nothing is registered at import time)."""
    _register_lifecycle(registry)
    for w in watches(settings):
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
        if cfg.webhook_enabled:
            certs = CertManager(runtime.reconciler.client, cfg)
            await certs.ensure()
            settings.admission.server = kopf.WebhookServer(
                addr=cfg.webhook_listen_address,
                port=cfg.webhook_port,
                certfile=str(certs.certfile),
                pkeyfile=str(certs.keyfile),
                file_check_interval=30,
            )
            memo.rotation = asyncio.create_task(certs.run_rotation())
        if runtime.cache is not None:
            await runtime.cache.prime()  # complete reads before the first pass
        runtime.start(cfg.workers)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        if rotation := getattr(memo, "rotation", None):
            rotation.cancel()
        await memo.runtime.stop()


def _register_watch(registry: kopf.OperatorRegistry, w: Watch) -> None:
    labels = {key: kopf.PRESENT for key in w.required_labels} or None

    @kopf.on.event(
        w.group, w.version, w.plural, labels=labels, registry=registry, id=f"watch-{w.plural}"
    )
    def on_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        obj = event["object"]
        if runtime.cache is not None:
            runtime.cache.observe(obj, deleted=event.get("type") == "DELETED")
        for key in _keys(w, obj, runtime):
            runtime.queue.add(key)


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
    def validate_workspace(
        body: kopf.Body, old: Any, memo: kopf.Memo, subresource: str | None, **_: Any
    ) -> None:
        if subresource:  # status updates are the controller's own
            return
        errors = admission_errors(
            dict(body),
            dict(old) if old else None,
            nap_enabled=memo.settings.node_auto_provisioning,
        )
        if errors:
            raise kopf.AdmissionError(denial_message(errors), code=422)
