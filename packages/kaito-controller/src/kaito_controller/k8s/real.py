"""``KubeClient`` over the ``kubernetes`` package's REST layer, run in worker threads.

Why: the generated typed API classes would force one code path per kind and deserialize
into model objects we do not want; the controller works on plain dicts. This class builds the
REST paths from the small kind table (``k8s.resources``), uses the package's authentication
(kubeconfig or in-cluster token, including token refresh) and its connection pool, and keeps
the event loop free by running each blocking call with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kaito_controller.k8s.client import FIELD_MANAGER, KubeError, Manifest, ObjectRef
from kaito_controller.k8s.resources import kind_of


def load_api_client(kubeconfig: str | None, *, pool_size: int = 16) -> k8s_client.ApiClient:
    """An ``ApiClient`` from an explicit kubeconfig, else in-cluster config, else ``~/.kube``."""
    cfg = k8s_client.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return k8s_client.ApiClient(cfg)


def label_selector(labels: Mapping[str, str] | None) -> str | None:
    """``a=b,c=d`` from equality labels (``None`` when there are none)."""
    if not labels:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class RealKubeClient:
    """The production ``KubeClient``."""

    def __init__(self, api: k8s_client.ApiClient, *, timeout: float = 30.0) -> None:
        self._api = api
        self._timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self._api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,  # the REST layer JSON-encodes it (also for apply-patch+yaml)
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            response.read()
        except ApiException as err:  # raised by the REST layer for transport problems
            raise KubeError(f"{method} {path}: {err.reason}", status=err.status or 0) from err
        status = response.status
        data = response.data.decode() if response.data else ""
        if not 200 <= status <= 299:
            reason, message = "", data[:500]
            try:
                parsed = json.loads(data)
                reason, message = parsed.get("reason", ""), parsed.get("message", message)
            except ValueError:
                pass
            raise KubeError(f"{method} {path}: {status} {message}", status=status, reason=reason)
        return json.loads(data) if data else {}

    def list_for_watch(
        self, api_version: str, kind: str, *, selector: str | None
    ) -> tuple[list[Manifest], str]:
        """Blocking list of every object matching ``selector`` (server-side), and the list's
        resourceVersion to start a watch from."""
        query = [("labelSelector", selector)] if selector else []
        k = kind_of(api_version, kind)
        result = self._call("GET", k.collection_path(None), query=query)
        items = result.get("items") or []
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items, (result.get("metadata") or {}).get("resourceVersion") or ""

    def watch(
        self,
        api_version: str,
        kind: str,
        *,
        selector: str | None,
        resource_version: str,
        timeout_seconds: int = 300,
    ) -> Iterator[Manifest]:
        """Blocking stream of watch events (``{"type", "object"}``) from ``resource_version``;
        the API server filters by ``selector`` and closes the stream after ``timeout_seconds``.
        """
        query = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if selector:
            query.append(("labelSelector", selector))
        path = kind_of(api_version, kind).collection_path(None)
        request = self._api.param_serialize(
            "GET",
            path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=(10, timeout_seconds + 30))
        except ApiException as err:
            raise KubeError(f"watch {path}: {err.reason}", status=err.status or 0) from err
        raw = response.response  # urllib3 response, not preloaded: read it line by line
        try:
            if not 200 <= response.status <= 299:
                body = raw.read().decode(errors="replace")[:500]
                raise KubeError(f"watch {path}: {response.status} {body}", status=response.status)
            pending = b""
            for chunk in raw.stream(64 * 1024):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()

    async def _run(self, method: str, path: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._call, method, path, **kwargs)

    async def get(self, ref: ObjectRef) -> Manifest | None:
        path = kind_of(ref.api_version, ref.kind).object_path(ref.name, ref.namespace)
        try:
            return await self._run("GET", path)
        except KubeError as err:
            if err.not_found:
                return None
            raise

    async def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        field_selector: str | None = None,
        selector: str | None = None,
    ) -> list[Manifest]:
        k = kind_of(api_version, kind)
        query: list[tuple[str, str]] = []
        terms = [t for t in (label_selector(labels), selector) if t]
        if terms:
            query.append(("labelSelector", ",".join(terms)))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        result = await self._run("GET", k.collection_path(namespace), query=query)
        items = result.get("items") or []
        for item in items:  # list items come without apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    async def apply(self, manifest: Manifest) -> Manifest:
        ref = ObjectRef.of(manifest)
        path = kind_of(ref.api_version, ref.kind).object_path(ref.name, ref.namespace)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return await self._run(
            "PATCH", path, query=query, body=manifest, content_type="application/apply-patch+yaml"
        )

    async def create(self, manifest: Manifest) -> Manifest:
        meta = manifest.get("metadata") or {}
        k = kind_of(manifest["apiVersion"], manifest["kind"])
        return await self._run("POST", k.collection_path(meta.get("namespace")), body=manifest)

    async def delete(self, ref: ObjectRef, *, propagation: str = "Background") -> bool:
        path = kind_of(ref.api_version, ref.kind).object_path(ref.name, ref.namespace)
        try:
            await self._run("DELETE", path, body={"propagationPolicy": propagation})
        except KubeError as err:
            if err.not_found:
                return False
            raise
        return True

    async def patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> Manifest:
        path = kind_of(ref.api_version, ref.kind).object_path(ref.name, ref.namespace)
        return await self._run(
            "PATCH", path, body=dict(patch), content_type="application/merge-patch+json"
        )

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> Manifest:
        path = kind_of(ref.api_version, ref.kind).object_path(ref.name, ref.namespace) + "/status"
        return await self._run(
            "PATCH",
            path,
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
        )
