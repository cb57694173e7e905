"""`AzureNodeProvisioner`: one single-node AKS agent pool per NodeClaim.

Why: this is the cloud half of the gpu-provisioner. Differences from Azure/gpu-provisioner, on
purpose (reference section 2.10):

* **GET before PUT.** ``create`` first reads the pool. An existing pool is adopted (a restart
  mid-creation never sends a second PUT); one still ``Creating`` answers `LaunchPending` and the
  controller polls again later instead of blocking a worker for the whole LRO.
* **Classified errors.** Quota, SKU/zone, throttling and credential failures come back as typed
  errors with the cloud's message (azure/errors.py); a pool left ``Failed`` by its LRO is
  classified from its ``status.provisioningError``.
* **NotFound by status code,** never by message text.

The node that joined is found by the ``agentpool`` / ``kubernetes.azure.com/agentpool`` labels
AKS puts on it; its ``spec.providerID`` becomes the claim's providerID.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.containerservice.models import AgentPool
from kaito_api.nodeclaim import NodeClaim

from kaito_gpu_provisioner.azure.agentpools import AgentPoolsAPI
from kaito_gpu_provisioner.azure.errors import classify, classify_code
from kaito_gpu_provisioner.azure.pools import (
    IN_PROGRESS,
    agent_pool_body,
    creation_time,
    is_kaito_pool,
    node_selector,
    validate_pool_name,
)
from kaito_gpu_provisioner.claims import INSTANCE_TYPE_LABEL, required_instance_type
from kaito_gpu_provisioner.kube import KubeAPI
from kaito_gpu_provisioner.provisioner import (
    Instance,
    LaunchPending,
    NodeClaimNotFound,
    ProvisionerError,
)
from kaito_gpu_provisioner.skus import looks_like_gpu, shape_for

logger = logging.getLogger(__name__)


class AzureNodeProvisioner:
    """`NodeProvisioner` over AKS agent pools (see module docstring)."""

    name = "azure"

    def __init__(
        self,
        api: AgentPoolsAPI,
        kube: KubeAPI,
        *,
        resource_group: str,
        cluster_name: str,
        gpu_driver: str = "Install",
        poll_interval: float = 10.0,
    ) -> None:
        self._api = api
        self._kube = kube
        self._rg = resource_group
        self._cluster = cluster_name
        self._gpu_driver = gpu_driver
        self._poll = poll_interval

    def _where(self, pool: str) -> str:
        return f"agent pool {pool!r} in {self._rg}/{self._cluster}"

    async def create(self, claim: NodeClaim) -> Instance:
        shape = shape_for(required_instance_type(claim))
        gpu = shape.gpus > 0 if shape is not None else looks_like_gpu(required_instance_type(claim))
        body = agent_pool_body(claim, gpu=gpu, gpu_driver=self._gpu_driver)
        pool = await self._get_or_none(claim.name)
        if pool is None or _state(pool) in ("failed", "canceled"):
            pool = await self._put(claim.name, body)
        state = _state(pool)
        if state in IN_PROGRESS or state == "deleting":
            raise LaunchPending(
                f"{self._where(claim.name)} is {pool.provisioning_state}", retry_after=self._poll
            )
        if state != "succeeded":
            raise self._pool_failure(pool)
        return await self._instance(pool, capacity=shape.capacity if shape else {})

    async def _put(self, name: str, body: Mapping[str, Any]) -> AgentPool:
        context = f"creating {self._where(name)}"
        try:
            poller = await self._api.begin_create_or_update(
                self._rg, self._cluster, name, AgentPool(body)
            )
            return await poller.result()
        except (AzureError, ProvisionerError) as err:
            raise classify(err, context=context) from err

    def _pool_failure(self, pool: AgentPool) -> ProvisionerError:
        status = pool.status
        detail = status.provisioning_error if status is not None else None
        code = str(detail.code) if detail is not None and detail.code else "ProvisioningFailed"
        message = str(detail.message) if detail is not None and detail.message else ""
        state = pool.provisioning_state
        return classify_code(
            code,
            message or f"provisioningState is {state}",
            context=f"creating {self._where(str(pool.name))}",
        )

    async def _instance(self, pool: AgentPool, *, capacity: Mapping[str, str]) -> Instance:
        name = str(pool.name)
        nodes = [
            n
            for n in await self._kube.list_nodes(node_selector(name))
            if (n.get("spec") or {}).get("providerID")
        ]
        if len(nodes) != 1:
            raise LaunchPending(
                f"{self._where(name)} succeeded; waiting for its node to register "
                f"({len(nodes)} nodes with a providerID)",
                retry_after=1.0,
            )
        node = nodes[0]
        node_status: Mapping[str, Any] = node.get("status") or {}
        return Instance(
            claim_name=name,
            instance_type=str(pool.vm_size),
            provider_id=str(node["spec"]["providerID"]),
            node_name=str(node["metadata"]["name"]),
            labels={**(pool.node_labels or {}), INSTANCE_TYPE_LABEL: str(pool.vm_size)},
            capacity=dict(node_status.get("capacity") or capacity),
            state=str(pool.provisioning_state),
            created_at=creation_time(pool.node_labels),
        )

    async def delete(self, claim: NodeClaim) -> None:
        await self.delete_pool(claim.name)

    async def delete_pool(self, name: str) -> None:
        """Delete a pool by name; raise NodeClaimNotFound once it is gone."""
        pool = await self._get_or_none(name)
        if pool is None:
            raise NodeClaimNotFound(f"{self._where(name)} does not exist")
        if _state(pool) == "deleting":
            return
        context = f"deleting {self._where(name)}"
        try:
            poller = await self._api.begin_delete(self._rg, self._cluster, name)
            await poller.result()
        except ResourceNotFoundError as err:
            raise NodeClaimNotFound(f"{self._where(name)} does not exist") from err
        except AzureError as err:
            raise classify(err, context=context) from err
        # A DELETE whose operation Succeeded means the resource is gone (ARM async contract).
        raise NodeClaimNotFound(f"{self._where(name)} deleted")

    async def get(self, claim_name: str) -> Instance:
        pool = await self._get_or_none(claim_name)
        if pool is None:
            raise NodeClaimNotFound(f"{self._where(claim_name)} does not exist")
        return _describe(pool)

    async def list(self) -> Sequence[Instance]:
        out: list[Instance] = []
        try:
            async for pool in self._api.list(self._rg, self._cluster):
                if is_kaito_pool(pool.node_labels):
                    out.append(_describe(pool))
        except AzureError as err:
            raise classify(
                err, context=f"listing agent pools of {self._rg}/{self._cluster}"
            ) from err
        return out

    async def _get_or_none(self, name: str) -> AgentPool | None:
        validate_pool_name(name)
        try:
            return await self._api.get(self._rg, self._cluster, name)
        except ResourceNotFoundError:
            return None
        except AzureError as err:
            raise classify(err, context=f"reading {self._where(name)}") from err


def _state(pool: AgentPool) -> str:
    return str(pool.provisioning_state or "").lower()


def _describe(pool: AgentPool) -> Instance:
    return Instance(
        claim_name=str(pool.name),
        instance_type=str(pool.vm_size or ""),
        labels=dict(pool.node_labels or {}),
        state=str(pool.provisioning_state or ""),
        created_at=creation_time(pool.node_labels),
        deleting=_state(pool) == "deleting",
    )
