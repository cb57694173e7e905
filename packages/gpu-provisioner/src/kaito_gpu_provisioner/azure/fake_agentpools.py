"""`InMemoryAgentPools`: an in-memory `AgentPoolsAPI` with ARM's semantics, for unit tests.

Why: the Azure provider's logic (adopt, classify, delete until gone) should be tested in
milliseconds, without HTTP. This fake keeps pools as REST JSON, returns the SDK's own
``AgentPool`` models and raises the SDK's own exceptions (built from real ARM error bodies), so
the provider cannot tell it from ``AgentPoolsOperations``. The HTTP-level twin, which exercises
the real SDK pipeline, is `kaito_gpu_provisioner.testing.arm_server`.

Knobs: ``put_errors`` (raised by the next PUTs, e.g. a 400 quota error), ``lro_failure``
(the next create operation ends ``Failed`` with this code/message), ``hold`` (operations stay
in progress until `finish`), ``on_succeeded`` / ``on_deleted`` hooks (the "AKS side": register
or remove a node).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import HttpRequest, HttpResponse
from azure.mgmt.containerservice.models import AgentPool
from azure.mgmt.core.exceptions import ARMErrorFormat

Hook = Callable[[dict[str, Any]], Awaitable[None]]
_EXCEPTIONS: dict[int, type[HttpResponseError]] = {
    404: ResourceNotFoundError,
    409: ResourceExistsError,
}


class _ErrorResponse(HttpResponse):
    """A canned HTTP response carrying an ARM error body (what the SDK parses errors from)."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(HttpRequest("GET", "https://management.azure.com/"), None)
        self.status_code = status
        self.headers = headers
        self.reason = "Error"
        self.content_type = "application/json"
        self._body = json.dumps(body).encode()

    def body(self) -> bytes:
        return self._body


def http_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> HttpResponseError:
    """The exception the SDK raises for an ARM error response with this status and body."""
    from azure.core.exceptions import ClientAuthenticationError

    exc_type = (
        ClientAuthenticationError if status == 401 else _EXCEPTIONS.get(status, HttpResponseError)
    )
    response = _ErrorResponse(status, {"error": {"code": code, "message": message}}, headers or {})
    return exc_type(response=response, error_format=ARMErrorFormat)


class _Poller:
    def __init__(self, run: Callable[[], Awaitable[Any]]) -> None:
        self._run = run

    async def result(self) -> Any:
        return await self._run()


class InMemoryAgentPools:
    """Agent pools of any number of clusters, keyed by (resource group, cluster, pool)."""

    def __init__(self, *, on_succeeded: Hook | None = None, on_deleted: Hook | None = None) -> None:
        self.pools: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.put_errors: list[HttpResponseError] = []
        self.lro_failure: tuple[str, str] | None = None
        self.hold = False
        self.on_succeeded = on_succeeded
        self.on_deleted = on_deleted
        self._done: dict[tuple[str, str, str], asyncio.Event] = {}

    def _key(self, rg: str, cluster: str, name: str) -> tuple[str, str, str]:
        return (rg.lower(), cluster.lower(), name.lower())

    def finish(self, rg: str, cluster: str, name: str) -> None:
        """Let a held operation on this pool complete."""
        self._done.setdefault(self._key(rg, cluster, name), asyncio.Event()).set()

    async def get(
        self, resource_group_name: str, resource_name: str, agent_pool_name: str, **_: Any
    ) -> AgentPool:
        self.calls.append(("get", agent_pool_name))
        raw = self.pools.get(self._key(resource_group_name, resource_name, agent_pool_name))
        if raw is None:
            raise http_error(404, "NotFound", f"Agent Pool not found: {agent_pool_name}")
        return AgentPool(copy.deepcopy(raw))

    async def begin_create_or_update(
        self,
        resource_group_name: str,
        resource_name: str,
        agent_pool_name: str,
        parameters: AgentPool,
        **_: Any,
    ) -> _Poller:
        self.calls.append(("put", agent_pool_name))
        key = self._key(resource_group_name, resource_name, agent_pool_name)
        if self.put_errors:
            raise self.put_errors.pop(0)
        existing = self.pools.get(key)
        if existing and existing["properties"]["provisioningState"] in ("Creating", "Updating"):
            raise http_error(
                409,
                "OperationNotAllowed",
                "Operation is not allowed because there's an in progress create node pool "
                "operation",
            )
        body = parameters.as_dict()
        raw = {
            "id": (
                f"/subscriptions/fake/resourceGroups/{resource_group_name}/providers/"
                f"Microsoft.ContainerService/managedClusters/{resource_name}/agentPools/"
                f"{agent_pool_name}"
            ),
            "name": agent_pool_name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": {
                **copy.deepcopy(body.get("properties") or {}),
                "provisioningState": "Updating" if existing else "Creating",
            },
        }
        self.pools[key] = raw
        failure, self.lro_failure = self.lro_failure, None
        return _Poller(lambda: self._complete_create(key, failure))

    async def _complete_create(
        self, key: tuple[str, str, str], failure: tuple[str, str] | None
    ) -> AgentPool:
        await self._wait(key)
        raw = self.pools[key]
        if failure is not None:
            code, message = failure
            raw["properties"]["provisioningState"] = "Failed"
            raw["properties"]["status"] = {"provisioningError": {"code": code, "message": message}}
            # The SDK raises the operation's error with the poll response's status (200).
            raise http_error(200, code, message)
        raw["properties"]["provisioningState"] = "Succeeded"
        raw["properties"].pop("status", None)
        if self.on_succeeded is not None:
            await self.on_succeeded(copy.deepcopy(raw))
        return AgentPool(copy.deepcopy(raw))

    async def begin_delete(
        self, resource_group_name: str, resource_name: str, agent_pool_name: str, **_: Any
    ) -> _Poller:
        self.calls.append(("delete", agent_pool_name))
        key = self._key(resource_group_name, resource_name, agent_pool_name)
        raw = self.pools.get(key)
        if raw is None:
            return _Poller(_none)  # ARM answers 204 for a missing resource
        raw["properties"]["provisioningState"] = "Deleting"
        return _Poller(lambda: self._complete_delete(key))

    async def _complete_delete(self, key: tuple[str, str, str]) -> None:
        await self._wait(key)
        raw = self.pools.pop(key, None)
        if raw is not None and self.on_deleted is not None:
            await self.on_deleted(raw)

    async def _wait(self, key: tuple[str, str, str]) -> None:
        if self.hold:
            event = self._done.setdefault(key, asyncio.Event())
            await event.wait()
            event.clear()

    def list(
        self, resource_group_name: str, resource_name: str, **_: Any
    ) -> AsyncIterator[AgentPool]:
        self.calls.append(("list", resource_name))
        prefix = (resource_group_name.lower(), resource_name.lower())
        snapshot = [copy.deepcopy(v) for k, v in self.pools.items() if k[:2] == prefix]

        async def pages() -> AsyncIterator[AgentPool]:
            for raw in snapshot:
                yield AgentPool(raw)

        return pages()


async def _none() -> None:
    return None
