"""The Azure provider against the in-memory agent-pool API: body sent, node lookup, adoption after
restart (no second PUT), failures classified onto the right errors, delete until NotFound, list."""

from __future__ import annotations

from typing import Any

import pytest
from claimfactory import nodeclaim
from kaito_api.nodeclaim import NodeClaim
from kaito_gpu_provisioner.azure.fake_agentpools import InMemoryAgentPools, http_error
from kaito_gpu_provisioner.azure.provisioner import AzureNodeProvisioner
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.provisioner import (
    InvalidNodeClaim,
    LaunchPending,
    NodeClaimNotFound,
    QuotaExceeded,
    SkuNotAvailable,
    Throttled,
)
from kaito_gpu_provisioner.testing.aks_nodes import aks_node, node_name
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube

RG, CLUSTER = "rg", "aks1"


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
def pools(kube: MemoryKube) -> InMemoryAgentPools:
    async def register(pool: dict[str, Any]) -> None:
        node = aks_node(pool, subscription="sub", node_resource_group="mc_rg", cluster=CLUSTER)
        await kube.create_node(node)

    async def unregister(pool: dict[str, Any]) -> None:
        await kube.delete_node(node_name(pool["name"]))

    return InMemoryAgentPools(on_succeeded=register, on_deleted=unregister)


@pytest.fixture
def provider(pools: InMemoryAgentPools, kube: MemoryKube) -> AzureNodeProvisioner:
    return AzureNodeProvisioner(
        pools, kube, resource_group=RG, cluster_name=CLUSTER, poll_interval=2
    )


def claim(**kw: Any) -> NodeClaim:
    return parse_nodeclaim(nodeclaim(**kw))


async def test_create_sends_one_node_pool_shaped_from_the_claim(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    inst = await provider.create(claim())
    props = pools.pools[(RG, CLUSTER.lower(), "ws1a2b3c4d5")]["properties"]
    assert props["vmSize"] == "Standard_NC6s_v3"
    assert props["count"] == 1
    assert props["osDiskSizeGB"] == 120
    assert props["osSKU"] == "Ubuntu"
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["gpuProfile"] == {"driver": "Install"}
    assert props["nodeLabels"]["kaito.sh/workspace"] == "phi-3"
    assert props["nodeLabels"]["karpenter.sh/nodepool"] == "kaito"
    assert props["nodeLabels"]["kaito.sh/creation-timestamp"] == "2026-11-25T07-00-00Z"
    assert props["provisioningState"] == "Succeeded"
    assert inst.provider_id.startswith("azure:///subscriptions/sub/resourceGroups/mc_rg/")
    assert inst.provider_id.endswith("-vmss/virtualMachines/0")
    assert inst.node_name == node_name("ws1a2b3c4d5")
    assert inst.capacity["nvidia.com/gpu"] == "1"
    assert [c[0] for c in pools.calls] == ["get", "put"]


async def test_create_is_idempotent_no_second_put(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    first = await provider.create(claim())
    second = await provider.create(claim())
    assert first.provider_id == second.provider_id
    assert [c[0] for c in pools.calls].count("put") == 1


async def test_restart_mid_creation_adopts_the_pool(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    pools.hold = True
    poller = await pools.begin_create_or_update(RG, CLUSTER, "ws1a2b3c4d5", _body())
    # A "restarted" provisioner sees the pool Creating: pending, and no PUT of its own.
    with pytest.raises(LaunchPending, match="Creating") as info:
        await provider.create(claim())
    assert info.value.retry_after == 2
    pools.finish(RG, CLUSTER, "ws1a2b3c4d5")
    await poller.result()
    inst = await provider.create(claim())
    assert inst.provider_id
    assert [c[0] for c in pools.calls].count("put") == 1


async def test_pool_succeeded_but_node_not_yet_registered_is_pending(
    pools: InMemoryAgentPools, kube: MemoryKube
) -> None:
    pools.on_succeeded = None
    provider = AzureNodeProvisioner(pools, kube, resource_group=RG, cluster_name=CLUSTER)
    with pytest.raises(LaunchPending, match="waiting for its node"):
        await provider.create(claim())


async def test_synchronous_quota_rejection(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    pools.put_errors.append(http_error(400, "QuotaExceeded", "exceeding approved NCSv3 quota"))
    with pytest.raises(QuotaExceeded, match="NCSv3 quota"):
        await provider.create(claim())


async def test_lro_failure_leaves_failed_pool_which_is_classified_then_re_put(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    pools.lro_failure = ("SkuNotAvailable", "Standard_NC6s_v3 is not available in location westus")
    with pytest.raises(SkuNotAvailable, match="westus"):
        await provider.create(claim())
    assert (
        pools.pools[(RG, CLUSTER.lower(), "ws1a2b3c4d5")]["properties"]["provisioningState"]
        == "Failed"
    )
    # The next attempt (after the controller's backoff) re-PUTs the Failed pool and succeeds.
    inst = await provider.create(claim())
    assert inst.provider_id
    assert [c[0] for c in pools.calls].count("put") == 2


async def test_throttling_carries_retry_after(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    pools.put_errors.append(http_error(429, "TooManyRequests", "slow", {"Retry-After": "12"}))
    with pytest.raises(Throttled) as info:
        await provider.create(claim())
    assert info.value.retry_after == 12


async def test_invalid_claims_are_rejected_before_any_call(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    with pytest.raises(InvalidNodeClaim, match="agent pool name"):
        await provider.create(claim(name="Workspace-1"))
    with pytest.raises(InvalidNodeClaim, match="storage"):
        await provider.create(claim(storage=None))
    assert pools.calls == []


async def test_delete_until_not_found(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools, kube: MemoryKube
) -> None:
    await provider.create(claim())
    with pytest.raises(NodeClaimNotFound, match="deleted"):
        await provider.delete(claim())
    assert pools.pools == {}
    assert kube.nodes == {}
    with pytest.raises(NodeClaimNotFound, match="does not exist"):
        await provider.delete(claim())


async def test_list_returns_only_kaito_pools(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools
) -> None:
    await provider.create(claim())
    system = _body()
    system["properties"]["nodeLabels"] = {}
    await (await pools.begin_create_or_update(RG, CLUSTER, "nodepool1", system)).result()
    listed = await provider.list()
    assert [i.claim_name for i in listed] == ["ws1a2b3c4d5"]
    assert listed[0].created_at is not None


def _body() -> Any:
    from azure.mgmt.containerservice.models import AgentPool

    return AgentPool(
        {
            "properties": {
                "vmSize": "Standard_NC6s_v3",
                "count": 1,
                "nodeLabels": {"kaito.sh/workspace": "phi-3", "karpenter.sh/nodepool": "kaito"},
            }
        }
    )


async def test_terminating_a_claim_whose_pool_is_still_creating_retries_then_deletes(
    pools: InMemoryAgentPools, kube: MemoryKube
) -> None:
    from kaito_gpu_provisioner.controller import NodeClaimController, Timing

    provider = AzureNodeProvisioner(pools, kube, resource_group=RG, cluster_name=CLUSTER)
    controller = NodeClaimController(provider, kube, timing=Timing(sync=0.25))
    pools.hold = True
    poller = await pools.begin_create_or_update(RG, CLUSTER, "ws1a2b3c4d5", _body())
    pools.put_errors.clear()
    # ARM refuses the DELETE while the create runs: retried, never released early.
    original = pools.begin_delete

    async def busy(*args: Any, **kwargs: Any) -> Any:
        raise http_error(
            409,
            "OperationNotAllowed",
            "Operation is not allowed: another operation is in progress.",
        )

    pools.begin_delete = busy  # type: ignore[method-assign]
    body = nodeclaim(deleted="2026-11-25T07:00:01Z")
    assert await controller.terminate(body) == 0.25
    pools.begin_delete = original  # type: ignore[method-assign]
    pools.finish(RG, CLUSTER, "ws1a2b3c4d5")
    await poller.result()
    pools.hold = False
    assert await controller.terminate(body) is None
    assert pools.pools == {}


async def test_controller_requeues_throttling_after_retry_after_and_quota_after_backoff(
    provider: AzureNodeProvisioner, pools: InMemoryAgentPools, kube: MemoryKube
) -> None:
    from kaito_gpu_provisioner.controller import NodeClaimController, Timing

    controller = NodeClaimController(provider, kube, timing=Timing(sync=1, failure_retry=300))
    body = nodeclaim()
    kube.nodeclaims[body["metadata"]["name"]] = body
    pools.put_errors.append(http_error(429, "TooManyRequests", "slow", {"Retry-After": "42"}))
    outcome = await controller.reconcile(body)
    assert (outcome.ready, outcome.requeue_after) == (False, 42)
    launched = kube.nodeclaims["ws1a2b3c4d5"]["status"]["conditions"][0]
    assert (launched["status"], launched["reason"]) == ("Unknown", "Throttled")
    pools.put_errors.append(http_error(400, "QuotaExceeded", "exceeding approved quota"))
    outcome = await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])
    assert outcome.requeue_after == 300
    launched = kube.nodeclaims["ws1a2b3c4d5"]["status"]["conditions"][0]
    assert (launched["status"], launched["reason"]) == ("False", "QuotaExceeded")
    assert "exceeding approved quota" in launched["message"]
