"""`LocalNodeProvisioner`: each NodeClaim becomes a real node on the host, via the node agent.

Why: the local cluster's data plane must be real (pods run containers), so NodeClaims cannot
end as KWOK fakes there. This provider asks the node agent (:mod:`.host`, the local "cloud")
for a machine named after the claim, shaped like its SKU: the SKU's GPU Feature Discovery
labels and GPU count (advertised as ``nvidia.com/gpu``), the claim's labels and taints. The
kubelet then registers the Node itself; ``create`` returns once the agent reports the machine
running *and* the Node exists with the GPUs the agent advertises on it, so Launched, Registered
and Initialized follow what the node really does (Initialized needs the node Ready with its
GPUs allocatable). Deleting the claim deletes
the machine (processes, mounts, network) and then the Node.

The agent's API errors map onto the provisioner's typed errors: unreachable or 5xx →
``CloudError`` (retried), 401 → ``AuthenticationFailed``, 409/422 → ``InvalidNodeClaim``, a
machine that failed to start → ``LaunchFailed`` with the agent's message (the failed machine is
deleted so the next attempt starts clean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from kaito_api.nodeclaim import NodeClaim
from pydantic import ValidationError

from kaito_gpu_provisioner.claims import (
    DEFAULT_NODEPOOL,
    GPU_RESOURCE,
    INSTANCE_TYPE_LABEL,
    NODEPOOL_LABEL,
    required_instance_type,
    taint_dict,
)
from kaito_gpu_provisioner.kube import KubeAPI
from kaito_gpu_provisioner.local.machines import (
    Machine,
    MachineList,
    MachinePhase,
    MachineSpec,
)
from kaito_gpu_provisioner.provisioner import (
    AuthenticationFailed,
    CloudError,
    Instance,
    InvalidNodeClaim,
    LaunchPending,
    NodeClaimNotFound,
    ProvisionerError,
)
from kaito_gpu_provisioner.skus import shape_for

MANAGED_BY_LABEL = "kaito.sh/provisioned-by"
MANAGED_BY = "gpu-provisioner-local"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


class LaunchFailed(ProvisionerError):
    """The node agent could not start the machine (its message says why)."""

    reason = "LaunchFailed"
    retryable = False


def machine_spec(claim: NodeClaim) -> MachineSpec:
    """The machine a claim asks for (pure).

    Raises:
        InvalidNodeClaim: the instance type is not in the presets SKU catalog.
    """
    instance_type = required_instance_type(claim)
    shape = shape_for(instance_type)
    if shape is None:
        raise InvalidNodeClaim(
            f"spec.requirements: instance type {instance_type!r} is not in the presets SKU "
            "catalog; the local provider cannot shape a node for it"
        )
    labels = {
        **shape.labels,
        NODEPOOL_LABEL: DEFAULT_NODEPOOL,
        **claim.labels,
        INSTANCE_TYPE_LABEL: required_instance_type(claim),
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    taints = [taint_dict(t) for t in (*claim.taints, *claim.startup_taints)]
    try:
        return MachineSpec.model_validate(
            {
                "name": claim.name,
                "instance_type": required_instance_type(claim),
                "labels": labels,
                "taints": taints,
                "gpus": shape.gpus,
            }
        )
    except ValidationError as err:
        raise InvalidNodeClaim(f"the claim cannot be a local machine: {err}") from err


def expected_capacity(spec: MachineSpec, shape_capacity: dict[str, str]) -> dict[str, str]:
    """What the node must end up advertising: the SKU's GPU count (cpu and memory are the
    host's, whatever the SKU says, so they are not promised)."""
    capacity = {k: v for k, v in shape_capacity.items() if k == GPU_RESOURCE}
    if spec.gpus:
        capacity[GPU_RESOURCE] = str(spec.gpus)
    return capacity


class AgentClient:
    """The node agent's HTTP API (see :mod:`.host.server`)."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=REQUEST_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            async with self._http().request(
                method, self._url + path, data=body, headers=headers
            ) as response:
                payload = await response.json(content_type=None)
                return response.status, payload
        except (TimeoutError, aiohttp.ClientError, ValueError) as err:
            raise CloudError(f"node agent at {self._url}: {err!r}") from err

    async def put(self, spec: MachineSpec) -> Machine:
        status, body = await self._call("PUT", f"/machines/{spec.name}", spec.model_dump_json())
        if status in (200, 201):
            return Machine.model_validate(body)
        raise _error(status, body, spec.name)

    async def get(self, name: str) -> Machine | None:
        status, body = await self._call("GET", f"/machines/{name}")
        if status == 404:
            return None
        if status == 200:
            return Machine.model_validate(body)
        raise _error(status, body, name)

    async def delete(self, name: str) -> Machine | None:
        status, body = await self._call("DELETE", f"/machines/{name}")
        if status == 404:
            return None
        if status == 202:
            return Machine.model_validate(body)
        raise _error(status, body, name)

    async def list(self) -> list[Machine]:
        status, body = await self._call("GET", "/machines")
        if status == 200:
            return MachineList.model_validate(body).items
        raise _error(status, body, "")


def _error(status: int, body: Any, name: str) -> ProvisionerError:
    message = body.get("error") if isinstance(body, dict) else str(body)
    text = f"node agent: machine {name!r}: {message}" if name else f"node agent: {message}"
    if status == 401:
        return AuthenticationFailed(text)
    if status in (409, 422):
        return InvalidNodeClaim(text)
    return CloudError(f"{text} (HTTP {status})")


class LocalNodeProvisioner:
    """`NodeProvisioner` backed by the node agent (see module docstring)."""

    name = "local"

    def __init__(self, kube: KubeAPI, agent: AgentClient) -> None:
        self._kube = kube
        self._agent = agent

    async def create(self, claim: NodeClaim) -> Instance:
        spec = machine_spec(claim)
        machine = await self._agent.get(claim.name)
        if machine is None:
            machine = await self._agent.put(spec)
        if machine.phase is MachinePhase.FAILED:
            await self._agent.delete(claim.name)  # the retry starts from scratch
            raise LaunchFailed(f"machine {claim.name!r} failed to start: {machine.message}")
        if machine.phase is MachinePhase.STOPPING:
            raise LaunchPending(f"machine {claim.name!r} is being deleted", retry_after=2)
        node = await self._kube.get_node(claim.name)
        if machine.phase is not MachinePhase.RUNNING or node is None:
            what = (
                "starting" if machine.phase is MachinePhase.STARTING else "waiting for its kubelet"
            )
            raise LaunchPending(f"machine {claim.name!r} is {what}", retry_after=1)
        shape = shape_for(required_instance_type(claim))
        capacity = expected_capacity(spec, dict(shape.capacity) if shape else {})
        # Launched only once the Node carries the GPUs the agent advertises: the controller
        # records the Node's capacity at registration and gates Initialized on what it records,
        # so a Node registered without them would be Initialized with no GPU allocatable.
        advertised = ((node.get("status") or {}).get("capacity")) or {}
        missing = [k for k, v in capacity.items() if str(advertised.get(k)) != v]
        if missing:
            raise LaunchPending(
                f"machine {claim.name!r}: its node does not advertise {', '.join(missing)} yet",
                retry_after=1,
            )
        return _instance(machine, node, capacity)

    async def delete(self, claim: NodeClaim) -> None:
        machine = await self._agent.delete(claim.name)
        if machine is None:
            raise NodeClaimNotFound(f"machine {claim.name!r} does not exist")

    async def get(self, claim_name: str) -> Instance:
        machine = await self._agent.get(claim_name)
        if machine is None or not _ours(machine):
            raise NodeClaimNotFound(f"machine {claim_name!r} does not exist")
        return _instance(machine, await self._kube.get_node(claim_name), {})

    async def list(self) -> Sequence[Instance]:
        # Only machines this provider made: the cluster's own (the system node) are not ours.
        # Each names its Node (the kubelet registers under the machine's name): garbage
        # collection deletes it with the machine, as nothing else here deletes a stopped
        # kubelet's Node.
        return [
            replace(_instance(m, None, {}), node_name=m.name)
            for m in await self._agent.list()
            if _ours(m)
        ]


def _ours(machine: Machine) -> bool:
    return machine.spec.labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def _instance(machine: Machine, node: dict[str, Any] | None, capacity: dict[str, str]) -> Instance:
    return Instance(
        claim_name=machine.name,
        instance_type=machine.spec.instance_type,
        provider_id=str(((node or {}).get("spec") or {}).get("providerID") or machine.provider_id)
        if node is not None
        else "",
        node_name=machine.name if node is not None else "",
        labels=dict(machine.spec.labels),
        capacity=capacity,
        state=machine.phase.value,
        created_at=machine.created_at,
        deleting=machine.phase is MachinePhase.STOPPING,
    )
