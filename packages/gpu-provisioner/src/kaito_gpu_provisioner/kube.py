"""The Kubernetes seam: the few API calls the provisioner makes, as one small Protocol.

Why: providers (KWOK creates Nodes, Azure looks them up), the lifecycle writer and the drain all
need the API server, and tests need to swap it for an in-memory fake
(`kaito_gpu_provisioner.testing.memory_kube.MemoryKube`). Objects travel as plain JSON dicts.
All patches are JSON merge patches (RFC 7386), the only kind custom resources accept.

`ApiKube` wraps the official synchronous client and runs each call in a worker thread, so kopf's
event loop never blocks. It authenticates like kopf: in-cluster ServiceAccount when running in a
pod, otherwise ``$KUBECONFIG`` / ``~/.kube/config``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Protocol

from kaito_gpu_provisioner.claims import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
POOL_SIZE = 32


class KubeAPI(Protocol):
    """API calls used by the provisioner. Missing objects are ``None`` / ignored, not errors."""

    async def get_node(self, name: str) -> dict[str, Any] | None: ...
    async def list_nodes(self, label_selector: str = "") -> list[dict[str, Any]]: ...
    async def create_node(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch_node(self, name: str, patch: Mapping[str, Any]) -> None: ...
    async def delete_node(self, name: str) -> None: ...
    async def list_nodeclaims(self) -> list[dict[str, Any]]: ...
    async def patch_nodeclaim_status(self, name: str, patch: Mapping[str, Any]) -> None: ...
    async def patch_nodeclaim(self, name: str, patch: Mapping[str, Any]) -> None: ...
    async def delete_nodeclaim(self, name: str) -> None: ...
    async def list_pods_on_node(self, node_name: str) -> list[dict[str, Any]]: ...
    async def evict_pod(self, namespace: str, name: str) -> bool:
        """Ask the Eviction API to evict; False when a PodDisruptionBudget refuses (429)."""
        ...


class KubeError(Exception):
    """An API server answer the provisioner cannot treat as success or not-found."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiKube:
    """`KubeAPI` over the official ``kubernetes`` client (calls run in threads)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._coordination = client.CoordinationV1Api(api_client)

    @classmethod
    def from_environment(cls) -> ApiKube:
        """In-cluster config inside a pod, else the kubeconfig (``$KUBECONFIG`` honoured)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        # One pooled connection per worker thread (main.py sizes the executor to match).
        configuration.connection_pool_maxsize = POOL_SIZE
        return cls(client.ApiClient(configuration))

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        def run() -> Any:
            try:
                response = fn(*args, _preload_content=False, **kwargs)
            except ApiException as err:
                if err.status == 404:
                    return None
                status = int(err.status or 0)
                message = f"{fn.__name__}: {status} {err.reason}: {err.body}"
                raise KubeError(message, status=status) from err
            data = response.data
            return json.loads(data) if data else {}

        return await asyncio.to_thread(run)

    async def get_node(self, name: str) -> dict[str, Any] | None:
        return await self._call(self._core.read_node, name)

    # Leader election (not in ``KubeAPI``: only ``main`` campaigns, with the real client).
    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call(self._coordination.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(self._coordination.create_namespaced_lease, namespace, body)

    async def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT with ``metadata.resourceVersion``: 409 when the Lease changed since it was read."""
        return await self._call(self._coordination.replace_namespaced_lease, name, namespace, body)

    async def list_nodes(self, label_selector: str = "") -> list[dict[str, Any]]:
        result = await self._call(self._core.list_node, label_selector=label_selector or None)
        return list((result or {}).get("items") or [])

    async def create_node(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(self._core.create_node, dict(body)) or {}

    async def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        await self._call(self._core.patch_node, name, dict(patch), _content_type=MERGE_PATCH)

    async def delete_node(self, name: str) -> None:
        await self._call(self._core.delete_node, name)

    async def list_nodeclaims(self) -> list[dict[str, Any]]:
        result = await self._call(self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        return list((result or {}).get("items") or [])

    async def patch_nodeclaim_status(self, name: str, patch: Mapping[str, Any]) -> None:
        await self._call(
            self._custom.patch_cluster_custom_object_status,
            GROUP,
            VERSION,
            PLURAL,
            name,
            {"status": dict(patch)},
            _content_type=MERGE_PATCH,
        )

    async def patch_nodeclaim(self, name: str, patch: Mapping[str, Any]) -> None:
        await self._call(
            self._custom.patch_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            name,
            dict(patch),
            _content_type=MERGE_PATCH,
        )

    async def delete_nodeclaim(self, name: str) -> None:
        await self._call(self._custom.delete_cluster_custom_object, GROUP, VERSION, PLURAL, name)

    async def list_pods_on_node(self, node_name: str) -> list[dict[str, Any]]:
        result = await self._call(
            self._core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node_name}"
        )
        return list((result or {}).get("items") or [])

    async def evict_pod(self, namespace: str, name: str) -> bool:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        try:
            await self._call(self._core.create_namespaced_pod_eviction, name, namespace, body)
        except KubeError as err:
            if err.status == 429:
                return False
            raise
        return True
