"""The real azure-mgmt-containerservice async client (HTTPS, bearer token, retries, LRO polling)
against the local ARM server, through the Azure provider exactly as production wires it: create
with async-operation polling, adopt, list with paging, delete with 202 + polling, and every
injected fault (sync quota/SKU 400, LRO Failed, 429 with Retry-After, 5xx, 401)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from claimfactory import nodeclaim
from kaito_api.nodeclaim import NodeClaim
from kaito_gpu_provisioner.azure.client import build_azure_provisioner
from kaito_gpu_provisioner.azure.provisioner import AzureNodeProvisioner
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.provisioner import (
    AuthenticationFailed,
    CloudError,
    NodeClaimNotFound,
    QuotaExceeded,
    SkuNotAvailable,
    Throttled,
)
from kaito_gpu_provisioner.settings import AzureSettings
from kaito_gpu_provisioner.testing.aks_nodes import aks_node, node_name
from kaito_gpu_provisioner.testing.arm_server import ArmServer, Fault
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube

pytestmark = pytest.mark.integration
SUB, RG, CLUSTER = "00000000-0000-0000-0000-000000000001", "rg-kaito", "aks-local"


class MemorySink:
    """The AKS side for tests: put the pool's node into the in-memory API."""

    def __init__(self, kube: MemoryKube) -> None:
        self.kube = kube

    def register(self, pool: Mapping[str, Any], *, subscription: str, cluster: str) -> None:
        node = aks_node(
            pool, subscription=subscription, node_resource_group="mc_x", cluster=cluster
        )
        self.kube.nodes[node["metadata"]["name"]] = node

    def unregister(self, pool: Mapping[str, Any]) -> None:
        self.kube.nodes.pop(node_name(str(pool["name"])), None)


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
def server(kube: MemoryKube, tmp_path: Any) -> Iterator[ArmServer]:
    with ArmServer(cert_dir=tmp_path, node_sink=MemorySink(kube), page_size=2) as srv:
        yield srv


@pytest.fixture
async def provider(server: ArmServer, kube: MemoryKube) -> AsyncIterator[AzureNodeProvisioner]:
    settings = AzureSettings(
        subscription_id=SUB,
        resource_group=RG,
        cluster_name=CLUSTER,
        arm_endpoint=server.url,
        arm_ca_bundle=server.ca_path,
        credential="static-token",
        static_token="test-token",
        polling_interval_seconds=0.2,
        retry_total=2,
    )
    prov, close = build_azure_provisioner(settings, kube)
    yield prov
    await close()


def claim(name: str = "ws1a2b3c4d5", **kw: Any) -> NodeClaim:
    return parse_nodeclaim(nodeclaim(name=name, **kw))


async def test_create_get_list_delete_through_the_sdk(
    provider: AzureNodeProvisioner, server: ArmServer, kube: MemoryKube
) -> None:
    inst = await provider.create(claim())
    pool = server.pool("ws1a2b3c4d5")
    assert pool is not None
    props = pool["properties"]
    assert (props["vmSize"], props["count"], props["osDiskSizeGB"]) == ("Standard_NC6s_v3", 1, 120)
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["nodeLabels"]["kaito.sh/workspace"] == "phi-3"
    assert props["provisioningState"] == "Succeeded"
    assert inst.provider_id == kube.nodes[node_name("ws1a2b3c4d5")]["spec"]["providerID"]
    assert f"/subscriptions/{SUB}/" in inst.provider_id
    # PUT + first op poll (immediate) + final GET, after the provider's own GET
    stats = server.stats()["requests"]
    assert stats == {"GET pool": 2, "PUT pool": 1, "GET operations": 1}
    # second create adopts: one GET, no PUT
    await provider.create(claim())
    assert server.stats()["requests"]["PUT pool"] == 1
    # list pages through nextLink (page size 2)
    for name in ("wsb", "wsc"):
        await provider.create(claim(name))
    assert sorted(i.claim_name for i in await provider.list()) == ["ws1a2b3c4d5", "wsb", "wsc"]
    assert server.stats()["requests"]["GET list"] == 2
    with pytest.raises(NodeClaimNotFound, match="deleted"):
        await provider.delete(claim())
    assert server.pool("ws1a2b3c4d5") is None
    assert node_name("ws1a2b3c4d5") not in kube.nodes
    with pytest.raises(NodeClaimNotFound):
        await provider.get("ws1a2b3c4d5")


async def test_slow_operation_is_polled_with_retry_after(
    provider: AzureNodeProvisioner, server: ArmServer
) -> None:
    server.operation_seconds = 1.2
    start = time.monotonic()
    await provider.create(claim())
    assert time.monotonic() - start >= 1.0
    assert server.stats()["requests"]["GET operations"] >= 2


@pytest.mark.parametrize(
    ("fault", "expected", "text"),
    [
        (Fault("quota"), QuotaExceeded, "standardNC6sFamily Cores quota"),
        (Fault("sku"), SkuNotAvailable, "not available in location eastus"),
        (Fault("quota", stage="lro"), QuotaExceeded, "quota"),
        (Fault("sku", stage="lro"), SkuNotAvailable, "Standard_NC6s_v3"),
        (Fault("throttle", times=-1, retry_after=1), Throttled, "Too many requests"),
        (Fault("server", times=-1), CloudError, "internal error"),
        (Fault("auth", method="ANY"), AuthenticationFailed, "access token is invalid"),
    ],
)
async def test_injected_faults_are_classified(
    provider: AzureNodeProvisioner, server: ArmServer, fault: Fault, expected: type, text: str
) -> None:
    server.add_fault(fault)
    with pytest.raises(expected, match=text) as info:
        await provider.create(claim())
    if expected is Throttled:
        assert info.value.retry_after == 1
    if fault.stage == "lro":
        failed = server.pool("ws1a2b3c4d5")
        assert failed is not None and failed["properties"]["provisioningState"] == "Failed"


async def test_one_429_is_retried_transparently_after_retry_after(
    provider: AzureNodeProvisioner, server: ArmServer
) -> None:
    server.add_fault(Fault("throttle", times=1, retry_after=1))
    start = time.monotonic()
    inst = await provider.create(claim())
    assert inst.provider_id
    assert time.monotonic() - start >= 0.9
    assert server.stats()["requests"]["PUT pool"] == 2
