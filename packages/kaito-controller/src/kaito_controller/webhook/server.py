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
PENDING_RETRY = 1.0


class CertificatePending(Exception):
    """A follower replica has no certificate yet: the leader generates and stores it."""


class CertManager:
    """Generates, persists, rotates and publishes the webhook serving certificate."""

    def __init__(
        self,
        client: KubeClient,
        settings: ControllerSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        may_generate: Callable[[], bool] = lambda: True,
    ) -> None:
        """``may_generate``: whether this replica may create or rotate the certificate (the
        leader); the others serve what the leader stored in the Secret."""
        self.client = client
        self.settings = settings
        self.clock = clock
        self.may_generate = may_generate
        self.dir = Path(settings.webhook_cert_dir)
        self.current: CertBundle | None = None

    @property
    def certfile(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def keyfile(self) -> Path:
        return self.dir / "tls.key"

    async def ensure(self) -> CertBundle:
        """Make sure a good certificate is on disk and trusted by the webhook config.

        Replicas share the certificate through the Secret: it is read on every check, so a
        rotation by the leader reaches the followers, and a write that races another replica's
        (resourceVersion changed) adopts the stored certificate instead of overwriting it.
        """
        loaded, version = await self._load_secret()
        stored = loaded or self.current
        hosts = self.settings.webhook_hosts
        why = needs_rotation(
            stored,
            hosts,
            now=self.clock(),
            renew_before=timedelta(days=self.settings.webhook_renew_before_days),
        )
        bundle = stored
        if (why is not None or bundle is None) and not self.may_generate():
            if bundle is None:
                raise CertificatePending(
                    f"waiting for the leader to store the webhook certificate ({why})"
                )
            why = None  # serve the stored one; the leader rotates it
        if why is not None or bundle is None:
            logger.info("webhook certificate: generating a new one (%s)", why)
            bundle = generate(hosts, now=self.clock(), days=self.settings.webhook_cert_days)
            # Trust first (old + new CA), then persist, then switch the server.
            await self._publish(ca_bundle(bundle, stored))
            if not await self._save_secret(bundle, version):
                return await self.ensure()  # another replica stored one first: use that
            self._write(bundle)
        else:
            self._write(bundle)
            await self._publish(bundle.ca_pem)
        self.current = bundle
        return bundle

    async def ensure_when_available(self) -> CertBundle:
        """``ensure``, waiting while a follower has no certificate from the leader yet."""
        while True:
            try:
                return await self.ensure()
            except CertificatePending as pending:
                logger.info("%s", pending)
                await asyncio.sleep(PENDING_RETRY)

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

    async def _load_secret(self) -> tuple[CertBundle | None, str | None]:
        """The stored certificate (if complete) and the Secret's resourceVersion."""
        ref = self._secret_ref()
        if ref is None:
            return None, None
        secret = await self.client.get(ref)
        data = (secret or {}).get("data") or {}
        version = ((secret or {}).get("metadata") or {}).get("resourceVersion")
        try:
            return (
                CertBundle(
                    ca_pem=base64.b64decode(data["ca.crt"]),
                    cert_pem=base64.b64decode(data["tls.crt"]),
                    key_pem=base64.b64decode(data["tls.key"]),
                ),
                version,
            )
        except (KeyError, ValueError):
            return None, version

    async def _save_secret(self, bundle: CertBundle, version: str | None) -> bool:
        """Persist ``bundle`` unless the Secret changed since ``version`` was read (then False)."""
        ref = self._secret_ref()
        if ref is None:
            return True
        data = {
            "ca.crt": base64.b64encode(bundle.ca_pem).decode(),
            "tls.crt": base64.b64encode(bundle.cert_pem).decode(),
            "tls.key": base64.b64encode(bundle.key_pem).decode(),
        }
        patch: dict[str, object] = {"data": data}
        if version:
            patch["metadata"] = {"resourceVersion": version}
        try:
            await self.client.patch(ref, patch)
        except KubeError as err:
            if err.status == 409:
                logger.info("another replica stored a webhook certificate first; using it")
                return False
            logger.warning("persisting the webhook certificate in %s: %s", ref, err)
        return True

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
