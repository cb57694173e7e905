"""KWOK provider and the controller steps over the in-memory API: full lifecycle to Ready with the
SKU's GPU shape, the configurable delay, termination with drain (PDB refusal, DaemonSet skipped),
garbage collection of orphans after the grace period, and a vanished node + capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from claimfactory import nodeclaim
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.controller import NodeClaimController, Timing
from kaito_gpu_provisioner.kwok.provisioner import KwokNodeProvisioner
from kaito_gpu_provisioner.provisioner import InvalidNodeClaim, LaunchPending
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube

T0 = datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


def make(kube: MemoryKube, clock: Clock, delay: float = 0.0) -> NodeClaimController:
    provider = KwokNodeProvisioner(kube, delay_seconds=delay, clock=clock)
    timing = Timing(sync=0.5, resync=30, failure_retry=300, drain_timeout=60, gc_grace=30)
    return NodeClaimController(provider, kube, timing=timing, clock=clock)


def store(kube: MemoryKube, body: dict[str, Any]) -> None:
    kube.nodeclaims[body["metadata"]["name"]] = body


def conditions(kube: MemoryKube, name: str) -> dict[str, str]:
    return {c["type"]: c["status"] for c in kube.nodeclaims[name]["status"]["conditions"]}


async def test_kwok_node_has_sku_shape_claim_labels_and_taints(
    kube: MemoryKube, clock: Clock
) -> None:
    provider = KwokNodeProvisioner(kube, clock=clock)
    inst = await provider.create(parse_nodeclaim(nodeclaim()))
    node = kube.nodes["ws1a2b3c4d5"]
    labels = node["metadata"]["labels"]
    assert inst.provider_id == "kwok://ws1a2b3c4d5" == node["spec"]["providerID"]
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
    assert labels["nvidia.com/gpu.product"].startswith("Tesla-V100")
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert labels["kaito.sh/workspace"] == "phi-3"
    assert labels["karpenter.sh/nodepool"] == "kaito"
    assert node["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


async def test_kwok_unknown_sku_is_invalid(kube: MemoryKube, clock: Clock) -> None:
    provider = KwokNodeProvisioner(kube, clock=clock)
    with pytest.raises(InvalidNodeClaim, match="Standard_D4s_v3"):
        await provider.create(parse_nodeclaim(nodeclaim(sku="Standard_D4s_v3")))


async def test_kwok_delay_counts_from_claim_creation(kube: MemoryKube, clock: Clock) -> None:
    provider = KwokNodeProvisioner(kube, delay_seconds=5, clock=clock)
    with pytest.raises(LaunchPending) as info:
        await provider.create(parse_nodeclaim(nodeclaim()))
    assert info.value.retry_after == pytest.approx(4)
    assert kube.nodes == {}
    clock.now = T0 + timedelta(seconds=6)
    assert (await provider.create(parse_nodeclaim(nodeclaim()))).provider_id


async def test_reconcile_reaches_ready_and_writes_node(kube: MemoryKube, clock: Clock) -> None:
    controller = make(kube, clock)
    store(kube, nodeclaim())
    first = await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    assert not first.ready and first.requeue_after == 0.5
    assert conditions(kube, "ws1a2b3c4d5") == {
        "Launched": "True",
        "Registered": "True",
        "Initialized": "Unknown",
        "Ready": "Unknown",
    }
    kube.kwok_tick()  # kwok marks the node Ready
    second = await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    assert second.ready and second.requeue_after == 30
    assert set(conditions(kube, "ws1a2b3c4d5").values()) == {"True"}
    status = kube.nodeclaims["ws1a2b3c4d5"]["status"]
    assert status["nodeName"] == "ws1a2b3c4d5"
    claim_labels = kube.nodeclaims["ws1a2b3c4d5"]["metadata"]["labels"]
    assert claim_labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert status["providerID"] == "kwok://ws1a2b3c4d5"
    labels = kube.nodes["ws1a2b3c4d5"]["metadata"]["labels"]
    assert labels["karpenter.sh/registered"] == labels["karpenter.sh/initialized"] == "true"
    # Ready claims are not re-launched: no create/get of the node by the provider any more
    kube.calls.clear()
    third = await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    assert third.ready
    assert ("create_node", "ws1a2b3c4d5") not in kube.calls
    assert ("patch_nodeclaim_status", "ws1a2b3c4d5") not in kube.calls


async def test_invalid_claim_surfaces_as_launched_false(kube: MemoryKube, clock: Clock) -> None:
    controller = make(kube, clock)
    store(kube, nodeclaim(sku=None))
    outcome = await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    assert outcome.requeue_after == 300
    launched = kube.nodeclaims["ws1a2b3c4d5"]["status"]["conditions"][0]
    assert (launched["status"], launched["reason"]) == ("False", "InvalidNodeClaim")


async def test_terminate_drains_then_deletes(kube: MemoryKube, clock: Clock) -> None:
    controller = make(kube, clock)
    store(kube, nodeclaim())
    await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    kube.add_pod("default", "phi-3-0", "ws1a2b3c4d5")
    kube.add_pod("kube-system", "ds-pod", "ws1a2b3c4d5", ownerReferences=[{"kind": "DaemonSet"}])
    kube.pdb_blocked.add(("default", "phi-3-0"))
    deleting = {**kube.nodeclaims["ws1a2b3c4d5"]}
    deleting["metadata"] = {**deleting["metadata"], "deletionTimestamp": "2026-11-25T07:00:01Z"}
    # PDB refuses: still draining, node cordoned and tainted, capacity kept
    assert await controller.terminate(deleting) == 0.5
    node = kube.nodes["ws1a2b3c4d5"]
    assert node["spec"]["unschedulable"] is True
    assert {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert ("evict_pod", "kube-system/ds-pod") not in kube.calls
    kube.pdb_blocked.clear()
    assert await controller.terminate(deleting) == 0.5  # evicted now; next pass sees none left
    assert await controller.terminate(deleting) == 0.5  # capacity delete started
    assert "ws1a2b3c4d5" not in kube.nodes
    assert await controller.terminate(deleting) is None  # gone: release the finalizer


async def test_drain_gives_up_after_timeout(kube: MemoryKube, clock: Clock) -> None:
    controller = make(kube, clock)
    store(kube, nodeclaim())
    await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    kube.add_pod("default", "stuck", "ws1a2b3c4d5")
    kube.pdb_blocked.add(("default", "stuck"))
    body = {**kube.nodeclaims["ws1a2b3c4d5"]}
    body["metadata"] = {**body["metadata"], "deletionTimestamp": "2026-11-25T07:00:01Z"}
    clock.now = T0 + timedelta(seconds=120)
    await controller.terminate(body)
    assert "ws1a2b3c4d5" not in kube.nodes


async def test_gc_collects_orphans_after_grace(kube: MemoryKube, clock: Clock) -> None:
    controller = make(kube, clock)
    provider = controller.provisioner
    await provider.create(parse_nodeclaim(nodeclaim(name="orphan1")))
    await provider.create(parse_nodeclaim(nodeclaim(name="owned1")))
    for node in kube.nodes.values():
        node["metadata"]["creationTimestamp"] = "2026-11-25T07:00:00Z"
    store(kube, nodeclaim(name="owned1"))
    clock.now = T0 + timedelta(seconds=10)
    assert await controller.collect_garbage() == []  # within grace
    clock.now = T0 + timedelta(seconds=31)
    assert await controller.collect_garbage() == ["orphan1"]
    assert set(kube.nodes) == {"owned1"}


async def test_registered_claim_whose_node_and_capacity_vanished_is_deleted(
    kube: MemoryKube, clock: Clock
) -> None:
    controller = make(kube, clock)
    store(kube, nodeclaim())
    await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    del kube.nodes["ws1a2b3c4d5"]
    await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    assert "ws1a2b3c4d5" not in kube.nodeclaims
