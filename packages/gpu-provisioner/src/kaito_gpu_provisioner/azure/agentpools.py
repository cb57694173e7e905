"""The narrow seam over the Azure SDK: the four agent-pool calls the provider makes.

Why: the provider must be testable without ARM. This Protocol mirrors
``azure.mgmt.containerservice.aio.operations.AgentPoolsOperations`` call for call, so the real
SDK object satisfies it unchanged, and `InMemoryAgentPools` (azure/fake_agentpools.py) is a
second implementation for unit tests. Models are the SDK's own ``AgentPool`` objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, TypeVar

from azure.mgmt.containerservice.models import AgentPool

T_co = TypeVar("T_co", covariant=True)


class Poller(Protocol[T_co]):
    """The part of ``AsyncLROPoller`` we use: wait for the operation and get its result."""

    async def result(self) -> T_co: ...


class AgentPoolsAPI(Protocol):
    """Create-or-update, get, delete and list agent pools of one managed cluster."""

    # Declared as plain methods returning awaitables: the SDK's are decorated coroutines.
    def get(
        self, resource_group_name: str, resource_name: str, agent_pool_name: str, **kwargs: Any
    ) -> Awaitable[AgentPool]: ...

    def begin_create_or_update(
        self,
        resource_group_name: str,
        resource_name: str,
        agent_pool_name: str,
        parameters: AgentPool,
        **kwargs: Any,
    ) -> Awaitable[Poller[AgentPool]]: ...

    def begin_delete(
        self, resource_group_name: str, resource_name: str, agent_pool_name: str, **kwargs: Any
    ) -> Awaitable[Poller[None]]: ...

    def list(
        self, resource_group_name: str, resource_name: str, **kwargs: Any
    ) -> AsyncIterator[AgentPool]: ...
