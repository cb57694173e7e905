"""The kopf handlers: watches that wake the queue, start-up/clean-up, the admission webhook.

Why: kopf gives us watches, the webhook server and the process life cycle; reconciliation
itself happens in the workers of ``handlers.runtime``. Every handler here is a few lines: map
an event to the Workspace key it concerns and enqueue it. Using ``on.event`` (not
``on.create``/``on.update``) keeps kopf from writing its own annotations and finalizers on
our objects: the controller's state lives in the Workspace status only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kaito_api.labels import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE

from kaito_controller.handlers.runtime import Runtime
from kaito_controller.settings import ControllerSettings
from kaito_controller.webhook.admission import admission_errors, denial_message
from kaito_controller.webhook.server import CertManager

logger = logging.getLogger(__name__)
WEBHOOK_ID = "validate-workspace"  # the URL path the ValidatingWebhookConfiguration calls


def register(registry: kopf.OperatorRegistry, settings: ControllerSettings) -> None:
    """Register every handler on ``registry`` (nothing is registered at import time)."""
    _register_lifecycle(registry)
    _register_owned_watches(registry)
    _register_node_watches(registry, settings)
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
        runtime.start(cfg.workers)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        if rotation := getattr(memo, "rotation", None):
            rotation.cancel()
        await memo.runtime.stop()


def _register_owned_watches(registry: kopf.OperatorRegistry) -> None:
    ws_label = {LABEL_WORKSPACE: kopf.PRESENT}

    @kopf.on.event("kaito.sh", "v1beta1", "workspaces", registry=registry)
    def workspace_event(
        name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        if namespace is None:
            return
        runtime: Runtime = memo.runtime
        selector = ((body.get("resource") or {}).get("labelSelector") or {}).get("matchLabels")
        runtime.selectors[(namespace, name)] = dict(selector or {})
        runtime.queue.add((namespace, name))

    for group, version, plural in (
        ("apps", "v1", "deployments"),
        ("apps", "v1", "statefulsets"),
        ("batch", "v1", "jobs"),
        ("", "v1", "pods"),
    ):

        @kopf.on.event(
            group, version, plural, labels=ws_label, registry=registry, id=f"owned-{plural}"
        )
        def owned_event(
            labels: Mapping[str, str], namespace: str | None, memo: kopf.Memo, **_: Any
        ) -> None:
            if namespace is None:
                return
            memo.runtime.queue.add((namespace, labels[LABEL_WORKSPACE]))


def _register_node_watches(registry: kopf.OperatorRegistry, settings: ControllerSettings) -> None:
    cluster_labels = {LABEL_WORKSPACE: kopf.PRESENT, LABEL_WORKSPACE_NAMESPACE: kopf.PRESENT}
    if settings.node_auto_provisioning:

        @kopf.on.event("karpenter.sh", "v1", "nodeclaims", labels=cluster_labels, registry=registry)
        def nodeclaim_event(labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
            memo.runtime.queue.add((labels[LABEL_WORKSPACE_NAMESPACE], labels[LABEL_WORKSPACE]))

        @kopf.on.event("", "v1", "nodes", labels=cluster_labels, registry=registry)
        def node_event(labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
            memo.runtime.queue.add((labels[LABEL_WORKSPACE_NAMESPACE], labels[LABEL_WORKSPACE]))

    else:

        @kopf.on.event("", "v1", "nodes", registry=registry)
        def byo_node_event(labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
            runtime: Runtime = memo.runtime
            for key, selector in list(runtime.selectors.items()):
                if selector and all(labels.get(k) == v for k, v in selector.items()):
                    runtime.queue.add(key)


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
