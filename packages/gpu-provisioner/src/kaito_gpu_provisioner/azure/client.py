"""Build the Azure credential and the async ContainerServiceClient from settings.

Why: the provider itself only sees `AgentPoolsAPI`; choosing a credential, an endpoint and TLS
trust is wiring. In a cluster the credential is workload identity (the webhook injects
``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_FEDERATED_TOKEN_FILE``); elsewhere environment
credentials or ``DefaultAzureCredential``. Against the local ARM fake only the endpoint, its CA
bundle and a static test token differ: the SDK pipeline (bearer policy, retries, LRO polling)
is the real one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncTokenCredential

from kaito_gpu_provisioner.azure.provisioner import AzureNodeProvisioner
from kaito_gpu_provisioner.kube import KubeAPI
from kaito_gpu_provisioner.settings import AzureSettings

ARM_SCOPE = "https://management.azure.com/.default"


class StaticTokenCredential(AsyncTokenCredential):
    """A credential that always returns one token: for the local ARM fake, never for Azure."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def make_credential(settings: AzureSettings) -> AsyncTokenCredential:
    """The credential named by ``settings.credential`` (azure-identity reads its own env)."""
    from azure.identity import aio as identity

    if settings.credential == "static-token":
        return StaticTokenCredential(settings.static_token)
    if settings.credential == "workload-identity":
        return identity.WorkloadIdentityCredential()
    if settings.credential == "environment":
        return identity.EnvironmentCredential()
    return identity.DefaultAzureCredential()


def build_azure_provisioner(
    settings: AzureSettings, kube: KubeAPI
) -> tuple[AzureNodeProvisioner, Callable[[], Awaitable[None]]]:
    """The provider plus an async ``close`` for the client and credential."""
    from azure.mgmt.containerservice.aio import ContainerServiceClient

    credential = make_credential(settings)
    options: dict[str, Any] = {
        "base_url": settings.arm_endpoint,
        "polling_interval": settings.polling_interval_seconds,
        "retry_total": settings.retry_total,
        "credential_scopes": [ARM_SCOPE],
    }
    session = None
    if settings.arm_ca_bundle is not None:
        # Not `connection_verify=<path>`: azure-core then builds a new SSLContext per request,
        # which defeats aiohttp's connection pool (a TLS handshake on every call). One context
        # on the connector keeps connections reused.
        import ssl

        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport

        context = ssl.create_default_context(cafile=str(settings.arm_ca_bundle))
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        options["transport"] = AioHttpTransport(session=session, session_owner=False)
    client = ContainerServiceClient(credential, settings.subscription_id, **options)
    provisioner = AzureNodeProvisioner(
        client.agent_pools,
        kube,
        resource_group=settings.resource_group,
        cluster_name=settings.cluster_name,
        gpu_driver=settings.gpu_driver,
        poll_interval=settings.polling_interval_seconds,
    )

    async def close() -> None:
        await client.close()
        await credential.close()
        if session is not None:
            await session.close()

    return provisioner, close
