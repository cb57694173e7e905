"""`LocalNodeProvisioner` against the real node agent API (aiohttp on loopback; the agent's
runtime is a recording fake, the cluster an in-memory kube): launch until the machine runs and
its kubelet registered the Node, failed starts, deletion, what list/get may return (never the
cluster's own nodes), errors of the agent's API, and the NodeClaim controller driving a claim
Launched → Registered → Initialized → Ready from what the node does, then terminating it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from claimfactory import nodeclaim
from kaito_api.nodeclaim import NodeClaim
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.controller import NodeClaimController, Timing
from kaito_gpu_provisioner.local.host.agent import Agent
from kaito_gpu_provisioner.local.host.server import make_app
from kaito_gpu_provisioner.local.machines import MachinePhase, MachineSpec
from kaito_gpu_provisioner.local.provisioner import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    AgentClient,
    LaunchFailed,
    LocalNodeProvisioner,
    machine_spec,
)
from kaito_gpu_provisioner.main import build_provisioner
from kaito_gpu_provisioner.provisioner import (
    AuthenticationFailed,
    CloudError,
    InvalidNodeClaim,
    LaunchPending,
    NodeClaimNotFound,
)
from kaito_gpu_provisioner.settings import Settings
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube
from localfakes import (
    AGENT_TOKEN,
    FakeRuntime,
    KubeNodeApi,
    agent_config,
    free_port,
    kubelet_node,
    kubelet_sync,
    serving,
    until,
)

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)


@dataclass
class Cloud:
    """The local cloud of one test: agent, its fake runtime, the kube, the provider."""

    agent: Agent
    runtime: FakeRuntime
    kube: MemoryKube
    url: str
    provider: LocalNodeProvisioner
    client: AgentClient

    def machine_phase(self, name: str) -> MachinePhase | None:
        machine = self.agent.get(name)
        return machine.phase if machine is not None else None

    async def running(self, name: str = "ws1") -> None:
        await until(lambda: self.machine_phase(name) is MachinePhase.RUNNING, what="running")

    async def gone(self, name: str = "ws1") -> None:
        await until(lambda: self.agent.get(name) is None, what=f"{name} gone")

    def kubelet_registers(self, name: str = "ws1") -> None:
        machine = self.agent.get(name)
        assert machine is not None
        self.kube.nodes[name] = kubelet_node(name, machine.spec)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    runtime, kube = FakeRuntime(), MemoryKube()
    agent = Agent(
        agent_config(tmp_path),
        runtime,  # type: ignore[arg-type]
        node_api=KubeNodeApi(kube),
        clock=lambda: T0,
    )
    async with serving(make_app(agent, AGENT_TOKEN)) as url:
        client = AgentClient(url, AGENT_TOKEN)
        yield Cloud(agent, runtime, kube, url, LocalNodeProvisioner(kube, client), client)
        await client.close()
        for gate in (runtime.start_gate, runtime.stop_gate):
            if gate is not None:
                gate.set()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=10)


def view(name: str = "ws1", **kwargs: Any) -> NodeClaim:
    return parse_nodeclaim(nodeclaim(name, **kwargs))


# --- create -------------------------------------------------------------------------


async def test_create_is_pending_until_running_and_registered(cloud: Cloud) -> None:
    cloud.runtime.start_gate = threading.Event()
    claim = view()
    with pytest.raises(LaunchPending, match="'ws1' is starting") as info:
        await cloud.provider.create(claim)
    assert info.value.retry_after == 1
    assert cloud.agent.get("ws1").spec == machine_spec(claim)  # type: ignore[union-attr]
    cloud.runtime.start_gate.set()
    await cloud.running()
    with pytest.raises(LaunchPending, match="waiting for its kubelet"):
        await cloud.provider.create(claim)
    cloud.kubelet_registers()
    with pytest.raises(LaunchPending, match=r"does not advertise nvidia\.com/gpu yet"):
        await cloud.provider.create(claim)
    await cloud.agent.reconcile_once()  # the agent advertises the GPUs on the Node
    instance = await cloud.provider.create(claim)
    assert instance.provider_id == "local://ws1"
    assert instance.node_name == "ws1"
    assert instance.instance_type == "Standard_NC6s_v3"
    assert instance.capacity == {"nvidia.com/gpu": "1"}
    assert instance.labels[MANAGED_BY_LABEL] == MANAGED_BY
    assert instance.state == "Running" and not instance.deleting
    assert instance.created_at == T0
    # idempotent: the same machine again, never a second one
    assert await cloud.provider.create(claim) == instance
    assert cloud.runtime.count("start") == 1
    assert [m.name for m in cloud.agent.list()] == ["ws1"]


async def test_capacity_is_the_skus_gpu_count(cloud: Cloud) -> None:
    claim = view(sku="Standard_NC24s_v3")
    with pytest.raises(LaunchPending):
        await cloud.provider.create(claim)
    await cloud.running()
    cloud.kubelet_registers()
    await cloud.agent.reconcile_once()
    instance = await cloud.provider.create(claim)
    assert instance.capacity == {"nvidia.com/gpu": "4"}
    assert cloud.kube.nodes["ws1"]["status"]["capacity"]["nvidia.com/gpu"] == "4"
    assert cloud.agent.get("ws1").spec.gpus == 4  # type: ignore[union-attr]


async def test_a_failed_start_is_launch_failed_and_the_machine_deleted(cloud: Cloud) -> None:
    cloud.runtime.fail_start["ws1"] = RuntimeError("kubelet of ws1 exited: bad flag")
    claim = view()
    with pytest.raises(LaunchPending):
        await cloud.provider.create(claim)
    await until(lambda: cloud.machine_phase("ws1") is MachinePhase.FAILED)
    with pytest.raises(
        LaunchFailed, match="failed to start: kubelet of ws1 exited: bad flag"
    ) as info:
        await cloud.provider.create(claim)
    assert (info.value.reason, info.value.retryable) == ("LaunchFailed", False)
    await cloud.gone()
    assert cloud.runtime.stops == [("ws1", False)]
    # the next attempt starts from scratch
    with pytest.raises(LaunchPending):
        await cloud.provider.create(claim)
    await cloud.running()
    assert cloud.runtime.count("start") == 2


async def test_create_while_the_machine_is_deleted_waits(cloud: Cloud) -> None:
    claim = view()
    with pytest.raises(LaunchPending):
        await cloud.provider.create(claim)
    await cloud.running()
    cloud.runtime.stop_gate = threading.Event()
    await cloud.provider.delete(claim)
    with pytest.raises(LaunchPending, match="being deleted") as info:
        await cloud.provider.create(claim)
    assert info.value.retry_after == 2


async def test_an_unknown_sku_never_reaches_the_agent(cloud: Cloud) -> None:
    with pytest.raises(InvalidNodeClaim, match=r"spec\.requirements"):
        await cloud.provider.create(view(sku="Standard_D4s_v3"))
    assert cloud.agent.list() == []


# --- delete, get, list --------------------------------------------------------------


async def test_delete_returns_while_deleting_then_not_found(cloud: Cloud) -> None:
    claim = view()
    with pytest.raises(LaunchPending):
        await cloud.provider.create(claim)
    await cloud.running()
    cloud.runtime.stop_gate = threading.Event()
    await cloud.provider.delete(claim)  # 202: being deleted
    await cloud.provider.delete(claim)  # still being deleted
    assert cloud.machine_phase("ws1") is MachinePhase.STOPPING
    cloud.runtime.stop_gate.set()
    await cloud.gone()
    with pytest.raises(NodeClaimNotFound):
        await cloud.provider.delete(claim)
    assert cloud.runtime.count("stop") == 1


async def test_deleting_what_was_never_made_is_not_found(cloud: Cloud) -> None:
    with pytest.raises(NodeClaimNotFound):
        await cloud.provider.delete(view("never"))


async def test_list_and_get_return_only_machines_this_provider_made(cloud: Cloud) -> None:
    # The cluster's own node: a machine of the agent, but not a NodeClaim's.
    system = MachineSpec(name="kaito-system", instance_type="local", labels={"role": "system"})
    await cloud.agent.put(system)
    with pytest.raises(LaunchPending):
        await cloud.provider.create(view())
    await cloud.running("kaito-system")
    await cloud.running("ws1")
    assert [i.claim_name for i in await cloud.provider.list()] == ["ws1"]
    with pytest.raises(NodeClaimNotFound):
        await cloud.provider.get("kaito-system")
    with pytest.raises(NodeClaimNotFound):
        await cloud.provider.get("nope")
    before = await cloud.provider.get("ws1")
    assert (before.provider_id, before.node_name) == ("", "")  # no Node yet
    cloud.kubelet_registers()
    after = await cloud.provider.get("ws1")
    assert (after.provider_id, after.node_name) == ("local://ws1", "ws1")
    assert after.created_at == T0


async def test_gc_collects_orphans_and_never_the_system_node(cloud: Cloud) -> None:
    system = MachineSpec(name="kaito-system", instance_type="local")
    await cloud.agent.put(system)
    await cloud.running("kaito-system")
    cloud.kubelet_registers("kaito-system")
    with pytest.raises(LaunchPending):
        await cloud.provider.create(view("orphan1"))
    await cloud.running("orphan1")
    cloud.kubelet_registers("orphan1")
    clock = Clock(T0 + timedelta(seconds=10))
    controller = NodeClaimController(
        cloud.provider, cloud.kube, timing=Timing(gc_grace=30), clock=clock
    )
    assert await controller.collect_garbage() == []  # within the grace period
    clock.now = T0 + timedelta(seconds=60)
    assert await controller.collect_garbage() == ["orphan1"]
    await cloud.gone("orphan1")
    assert "orphan1" not in cloud.kube.nodes  # the kubelet is gone: nobody else deletes it
    assert await controller.collect_garbage() == []
    assert cloud.machine_phase("kaito-system") is MachinePhase.RUNNING
    assert "kaito-system" in cloud.kube.nodes


# --- errors of the agent's API ------------------------------------------------------


async def test_a_wrong_token_is_authentication_failed(cloud: Cloud) -> None:
    client = AgentClient(cloud.url, "wrong")
    provider = LocalNodeProvisioner(cloud.kube, client)
    try:
        with pytest.raises(AuthenticationFailed, match="bearer token") as info:
            await provider.create(view())
        assert info.value.retryable is False
        with pytest.raises(AuthenticationFailed):
            await provider.list()
        with pytest.raises(AuthenticationFailed):
            await provider.delete(view())
    finally:
        await client.close()
    assert cloud.agent.list() == []


async def test_an_agent_that_is_down_is_a_cloud_error() -> None:
    client = AgentClient(f"http://127.0.0.1:{free_port()}/", AGENT_TOKEN)
    provider = LocalNodeProvisioner(MemoryKube(), client)
    try:
        for call in (
            provider.create(view()),
            provider.get("ws1"),
            provider.list(),
            provider.delete(view()),
        ):
            with pytest.raises(CloudError, match=r"node agent at http://127\.0\.0\.1") as info:
                await call
            assert info.value.retryable
    finally:
        await client.close()


async def test_a_5xx_or_a_reply_that_is_not_json_is_a_cloud_error() -> None:
    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    async def internal(_: web.Request) -> web.Response:
        return web.json_response({"error": "internal error"}, status=500)

    app = web.Application()
    app.add_routes([web.get("/machines", internal), web.get("/machines/{name}", broken)])
    async with serving(app) as url:
        client = AgentClient(url, AGENT_TOKEN)
        provider = LocalNodeProvisioner(MemoryKube(), client)
        try:
            with pytest.raises(CloudError, match=r"node agent: internal error \(HTTP 500\)"):
                await provider.list()
            with pytest.raises(CloudError, match="node agent at"):
                await provider.get("ws1")
        finally:
            await client.close()


async def test_a_conflicting_spec_is_an_invalid_claim(cloud: Cloud) -> None:
    spec = machine_spec(view())
    await cloud.client.put(spec)
    with pytest.raises(InvalidNodeClaim, match=r"'ws1'.*exists with another spec"):
        await cloud.client.put(spec.model_copy(update={"gpus": 2}))


async def test_the_provider_built_from_settings_talks_to_the_agent(cloud: Cloud) -> None:
    settings = Settings(
        provider="local",
        local={"agent_url": cloud.url + "/", "token": AGENT_TOKEN + "\n"},  # type: ignore[arg-type]
    )
    provider, closers = build_provisioner(settings, cloud.kube)
    try:
        with pytest.raises(LaunchPending):
            await provider.create(view())
        assert [i.claim_name for i in await provider.list()] == ["ws1"]
    finally:
        for close in closers:
            await close()


# --- the NodeClaim controller over this provider ------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def conditions(kube: MemoryKube, name: str = "ws1") -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c["reason"]) for c in kube.nodeclaims[name]["status"]["conditions"]
    }


async def test_the_controller_follows_the_real_node_to_ready_and_deletes_it(
    cloud: Cloud,
) -> None:
    kube = cloud.kube
    controller = NodeClaimController(
        cloud.provider,
        kube,
        timing=Timing(sync=0.5, resync=30, failure_retry=300),
        clock=Clock(T0 + timedelta(seconds=5)),
    )
    kube.nodeclaims["ws1"] = nodeclaim("ws1")
    cloud.runtime.start_gate = threading.Event()

    async def reconcile() -> float:
        outcome = await controller.reconcile(kube.nodeclaims["ws1"])
        return outcome.requeue_after

    assert await reconcile() == 1  # the agent's retry hint
    assert conditions(kube)["Launched"] == ("Unknown", "Launching")
    cloud.runtime.start_gate.set()
    await cloud.running()
    await reconcile()
    assert conditions(kube)["Launched"] == ("Unknown", "Launching")  # no Node yet

    cloud.kubelet_registers()  # NotReady, and no GPUs until the agent advertises them
    await reconcile()
    assert conditions(kube)["Launched"] == ("Unknown", "Launching")
    assert "nvidia.com/gpu" in kube.nodeclaims["ws1"]["status"]["conditions"][0]["message"]

    await cloud.agent.reconcile_once()  # the agent advertises the SKU's GPU on the Node
    assert kube.nodes["ws1"]["status"]["capacity"]["nvidia.com/gpu"] == "1"
    await reconcile()
    assert conditions(kube) == {
        "Launched": ("True", "Launched"),
        "Registered": ("True", "Registered"),
        "Initialized": ("Unknown", "NodeNotReady"),
        "Ready": ("Unknown", "ReconcilingDependents"),
    }
    status = kube.nodeclaims["ws1"]["status"]
    assert (status["providerID"], status["nodeName"]) == ("local://ws1", "ws1")
    assert status["capacity"]["nvidia.com/gpu"] == "1"
    node = kube.nodes["ws1"]
    assert node["metadata"]["labels"]["karpenter.sh/registered"] == "true"
    assert node["metadata"]["ownerReferences"][0]["name"] == "ws1"

    kubelet_sync(kube, "ws1", allocatable=False)  # Ready; GPUs not allocatable yet
    await reconcile()
    assert conditions(kube)["Initialized"] == ("Unknown", "ResourceNotRegistered")

    kubelet_sync(kube, "ws1")  # the kubelet makes them allocatable
    assert await reconcile() == 30
    assert set(conditions(kube).values()) == {
        ("True", "Launched"),
        ("True", "Registered"),
        ("True", "Initialized"),
        ("True", "Ready"),
    }
    assert kube.nodes["ws1"]["metadata"]["labels"]["karpenter.sh/initialized"] == "true"
    assert kube.nodeclaims["ws1"]["status"]["allocatable"]["nvidia.com/gpu"] == "1"

    deleting = {**kube.nodeclaims["ws1"]}
    deleting["metadata"] = {**deleting["metadata"], "deletionTimestamp": "2026-11-25T07:00:06Z"}
    assert await controller.terminate(deleting) == 0.5  # the machine is being deleted
    assert kube.nodes["ws1"]["spec"]["unschedulable"] is True
    await cloud.gone()
    assert await controller.terminate(deleting) is None
    assert "ws1" not in kube.nodes
    assert cloud.runtime.stops == [("ws1", False)]


async def test_a_node_ready_before_its_gpus_are_advertised_is_not_initialized(
    cloud: Cloud,
) -> None:
    kube = cloud.kube
    controller = NodeClaimController(cloud.provider, kube, clock=Clock(T0 + timedelta(seconds=5)))
    kube.nodeclaims["ws1"] = nodeclaim("ws1")
    await controller.reconcile(kube.nodeclaims["ws1"])
    await cloud.running()
    cloud.kubelet_registers()
    kubelet_sync(kube, "ws1")  # Ready at once, before the agent's next round
    for _ in range(2):
        outcome = await controller.reconcile(kube.nodeclaims["ws1"])
        assert not outcome.ready
        assert conditions(kube).get("Initialized", ("Unknown", ""))[0] == "Unknown"
    await cloud.agent.reconcile_once()
    await controller.reconcile(kube.nodeclaims["ws1"])
    assert conditions(kube)["Initialized"] == ("Unknown", "ResourceNotRegistered")
    kubelet_sync(kube, "ws1")
    assert (await controller.reconcile(kube.nodeclaims["ws1"])).ready


async def test_startup_taints_hold_initialization_until_removed(cloud: Cloud) -> None:
    kube = cloud.kube
    controller = NodeClaimController(cloud.provider, kube, clock=Clock(T0 + timedelta(seconds=5)))
    body = nodeclaim("ws1")
    body["spec"]["startupTaints"] = [{"key": "example.com/agent-not-ready", "effect": "NoSchedule"}]
    kube.nodeclaims["ws1"] = body
    await controller.reconcile(kube.nodeclaims["ws1"])
    await cloud.running()
    cloud.kubelet_registers()
    # the kubelet registers with the claim's taints and its startup taints
    keys = [t["key"] for t in kube.nodes["ws1"]["spec"]["taints"]]
    assert keys == ["sku", "example.com/agent-not-ready"]
    await cloud.agent.reconcile_once()
    kubelet_sync(kube, "ws1")
    await controller.reconcile(kube.nodeclaims["ws1"])
    assert conditions(kube)["Initialized"] == ("Unknown", "StartupTaintsExist")
    node = kube.nodes["ws1"]
    node["spec"]["taints"] = [t for t in node["spec"]["taints"] if t["key"] == "sku"]
    outcome = await controller.reconcile(kube.nodeclaims["ws1"])
    assert outcome.ready
    assert conditions(kube)["Initialized"] == ("True", "Initialized")
