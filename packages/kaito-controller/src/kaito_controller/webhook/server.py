"""Serving the webhook: keep a valid certificate on disk, its CA in the webhook config.

Why: kopf's ``WebhookServer`` serves admission requests over TLS from a cert and key file and
reloads them when they change. This module owns those files: at start-up it loads the
certificate from the persisted Secret (if configured) or generates one, rotates it before it
expires, and writes the CA bundle into the ValidatingWebhookConfiguration the chart installs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kaito_controller.k8s.client import KubeClient, KubeError, ObjectRef
from kaito_controller.settings import ControllerSettings
from kaito_controller.webhook.certs import CertBundle, ca_bundle, generate, needs_rotation

logger = logging.getLogger(__name__)
CHECK_INTERVAL = 3600.0


class CertManager:
    """Generates, persists, rotates and publishes the webhook serving certificate."""

    def __init__(
        self,
        client: KubeClient,
        settings: ControllerSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.dir = Path(settings.webhook_cert_dir)
        self.current: CertBundle | None = None

    @property
    def certfile(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def keyfile(self) -> Path:
        return self.dir / "tls.key"

    async def ensure(self) -> CertBundle:
        """Make sure a good certificate is on disk and trusted by the webhook config."""
        stored = self.current or await self._load_secret()
        hosts = self.settings.webhook_hosts
        why = needs_rotation(
            stored,
            hosts,
            now=self.clock(),
            renew_before=timedelta(days=self.settings.webhook_renew_before_days),
        )
        bundle = stored
        if why is not None or bundle is None:
            logger.info("webhook certificate: generating a new one (%s)", why)
            bundle = generate(hosts, now=self.clock(), days=self.settings.webhook_cert_days)
            # Trust first (old + new CA), then switch the server, then persist.
            await self._publish(ca_bundle(bundle, stored))
            self._write(bundle)
            await self._save_secret(bundle)
        else:
            self._write(bundle)
            await self._publish(bundle.ca_pem)
        self.current = bundle
        return bundle

    async def run_rotation(self) -> None:
        """Re-check hourly; rotation happens ``webhook_renew_before_days`` before expiry."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                await self.ensure()
            except Exception:
                logger.exception("webhook certificate rotation failed; retrying in an hour")

    def _write(self, bundle: CertBundle) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.certfile.exists() and self.certfile.read_bytes() == bundle.cert_pem:
            return
        tmp_key, tmp_cert = self.dir / "tls.key.tmp", self.dir / "tls.crt.tmp"
        tmp_key.write_bytes(bundle.key_pem)
        tmp_key.chmod(0o600)
        tmp_cert.write_bytes(bundle.cert_pem)
        tmp_key.replace(self.keyfile)
        tmp_cert.replace(self.certfile)  # kopf reloads on the cert file's change
        (self.dir / "ca.crt").write_bytes(bundle.ca_pem)

    def _secret_ref(self) -> ObjectRef | None:
        name = self.settings.webhook_cert_secret
        return ObjectRef("v1", "Secret", name, self.settings.release_namespace) if name else None

    async def _load_secret(self) -> CertBundle | None:
        ref = self._secret_ref()
        if ref is None:
            return None
        secret = await self.client.get(ref)
        data = (secret or {}).get("data") or {}
        try:
            return CertBundle(
                ca_pem=base64.b64decode(data["ca.crt"]),
                cert_pem=base64.b64decode(data["tls.crt"]),
                key_pem=base64.b64decode(data["tls.key"]),
            )
        except (KeyError, ValueError):
            return None

    async def _save_secret(self, bundle: CertBundle) -> None:
        ref = self._secret_ref()
        if ref is None:
            return
        data = {
            "ca.crt": base64.b64encode(bundle.ca_pem).decode(),
            "tls.crt": base64.b64encode(bundle.cert_pem).decode(),
            "tls.key": base64.b64encode(bundle.key_pem).decode(),
        }
        try:
            await self.client.patch(ref, {"data": data})
        except KubeError as err:
            logger.warning("persisting the webhook certificate in %s: %s", ref, err)

    async def _publish(self, ca: bytes) -> None:
        ref = ObjectRef(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            self.settings.webhook_config_name,
        )
        config = await self.client.get(ref)
        if config is None:
            logger.warning("%s not found: the webhook is served but nothing calls it", ref)
            return
        encoded = base64.b64encode(ca).decode()
        webhooks = config.get("webhooks") or []
        if all((w.get("clientConfig") or {}).get("caBundle") == encoded for w in webhooks):
            return
        for w in webhooks:
            w.setdefault("clientConfig", {})["caBundle"] = encoded
        await self.client.patch(
            ref,
            {
                "metadata": {"resourceVersion": config["metadata"]["resourceVersion"]},
                "webhooks": webhooks,
            },
        )
        logger.info("published the webhook CA bundle to %s", ref)
