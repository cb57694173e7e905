"""gpu-provisioner with the *Azure* provider (real azure-mgmt-containerservice client, HTTPS,
bearer token, LRO polling) against the local ARM server, which registers a KWOK node for each
pool as AKS would. Covers: pool shape (vmSize, labels, taints, count), node registered, conditions
in order; delete removes pool and node; quota failure as Launched=False with the cloud's message;
a restart mid-creation adopts the pool instead of creating a second one."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kaito_gpu_provisioner.testing.aks_nodes import node_name
from kaito_gpu_provisioner.testing.arm_server import ArmServer, Fault, KubeNodeSink
from kaito_gpu_provisioner.testing.e2e import ORDER, condition_status, get_json, nodeclaim, wait_for
from kaito_gpu_provisioner.testing.runner import ProvisionerProcess

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[2] / "charts" / "gpu-provisioner"
SUB, RG, CLUSTER = "00000000-0000-0000-0000-0000000000aa", "rg-kaito", "aks-local"


@pytest.fixture(scope="session")
def nodeclaim_crd(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "-f", str(CHART / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/nodeclaims.karpenter.sh", "--timeout=60s")


@pytest.fixture
def arm(kube_config_path: Path, tmp_path: Path, nodeclaim_crd: None) -> Iterator[ArmServer]:
    sink = KubeNodeSink(str(kube_config_path))
    with ArmServer(cert_dir=tmp_path / "arm", node_sink=sink) as server:
        yield server


def azure_env(arm: ArmServer) -> dict[str, str]:
    return {
        "KAITO_PROVISIONER_PROVIDER": "azure",
        "KAITO_PROVISIONER_AZURE__SUBSCRIPTION_ID": SUB,
        "KAITO_PROVISIONER_AZURE__RESOURCE_GROUP": RG,
        "KAITO_PROVISIONER_AZURE__CLUSTER_NAME": CLUSTER,
        "KAITO_PROVISIONER_AZURE__ARM_ENDPOINT": arm.url,
        "KAITO_PROVISIONER_AZURE__ARM_CA_BUNDLE": str(arm.ca_path),
        "KAITO_PROVISIONER_AZURE__CREDENTIAL": "static-token",
        "KAITO_PROVISIONER_AZURE__STATIC_TOKEN": "e2e-token",
        "KAITO_PROVISIONER_AZURE__POLLING_INTERVAL_SECONDS": "0.5",
        "KAITO_PROVISIONER_GC_INTERVAL_SECONDS": "3600",
    }


@pytest.fixture
def provisioner(
    arm: ArmServer, kube_config_path: Path, tmp_path: Path
) -> Iterator[ProvisionerProcess]:
    proc = ProvisionerProcess(
        azure_env(arm), kubeconfig=kube_config_path, log_path=tmp_path / "gp.log"
    )
    yield proc.start()
    proc.stop()


def claim_name() -> str:
    return f"wsa{secrets.token_hex(4)}"


def ready(kubectl: Callable[..., Any], name: str) -> Callable[[], Any]:
    def check() -> Any:
        claim = get_json(kubectl, "nodeclaim", name)
        return claim if condition_status(claim).get("Ready") == "True" else None

    return check


def test_azure_provider_lifecycle(
    kubectl: Callable[..., Any], arm: ArmServer, provisioner: ProvisionerProcess
) -> None:
    name = claim_name()
    kubectl("apply", "-f", "-", input=json.dumps(nodeclaim(name)))
    try:
        claim = wait_for(ready(kubectl, name), 60, f"{name} Ready; log:\n{provisioner.log_tail()}")
        pool = arm.pool(name)
        assert pool is not None
        props = pool["properties"]
        assert props["vmSize"] == "Standard_NC6s_v3"
        assert props["count"] == 1
        assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
        assert props["nodeLabels"]["kaito.sh/workspace"] == "phi-3"
        assert props["gpuProfile"] == {"driver": "Install"}
        assert arm.stats()["puts"][name] == 1
        status = claim["status"]
        node = get_json(kubectl, "node", node_name(name))
        assert node is not None
        assert status["nodeName"] == node_name(name)
        assert status["providerID"] == node["spec"]["providerID"]
        assert status["providerID"].startswith(f"azure:///subscriptions/{SUB}/")
        times = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
        assert [times[t] for t in ORDER] == sorted(times[t] for t in ORDER)
        assert node["metadata"]["labels"]["karpenter.sh/initialized"] == "true"
        assert node["metadata"]["labels"]["kubernetes.azure.com/agentpool"] == name
    finally:
        kubectl("delete", "nodeclaim", name, "--wait=false", check=False)
    wait_for(lambda: get_json(kubectl, "nodeclaim", name) is None, 60, f"{name} deleted")
    assert arm.pool(name) is None
    assert get_json(kubectl, "node", node_name(name)) is None


def test_quota_failure_is_launched_false_with_cloud_message(
    kubectl: Callable[..., Any], arm: ArmServer, provisioner: ProvisionerProcess
) -> None:
    name = claim_name()
    arm.add_fault(Fault("quota", times=-1, pool=name))
    kubectl("apply", "-f", "-", input=json.dumps(nodeclaim(name)))
    try:

        def launched_false() -> Any:
            claim = get_json(kubectl, "nodeclaim", name) or {}
            conds = (claim.get("status") or {}).get("conditions") or []
            return next(
                (c for c in conds if c["type"] == "Launched" and c["status"] == "False"), None
            )

        launched = wait_for(
            launched_false, 60, f"{name} Launched=False; log:\n{provisioner.log_tail()}"
        )
        assert launched["reason"] == "QuotaExceeded"
        assert "exceeding approved" in launched["message"] and "quota" in launched["message"]
        assert condition_status(get_json(kubectl, "nodeclaim", name))["Ready"] == "False"
    finally:
        kubectl("delete", "nodeclaim", name, "--wait=false", check=False)
    wait_for(lambda: get_json(kubectl, "nodeclaim", name) is None, 60, f"{name} deleted")


def test_restart_mid_creation_adopts_the_pool(
    kubectl: Callable[..., Any], arm: ArmServer, kube_config_path: Path, tmp_path: Path
) -> None:
    arm.operation_seconds = 6  # the LRO outlives the first provisioner
    name = claim_name()
    first = ProvisionerProcess(
        azure_env(arm), kubeconfig=kube_config_path, log_path=tmp_path / "1.log"
    )
    first.start()
    kubectl("apply", "-f", "-", input=json.dumps(nodeclaim(name)))
    try:
        wait_for(lambda: arm.pool(name), 30, f"pool {name} PUT; log:\n{first.log_tail()}")
        assert arm.pool(name)["properties"]["provisioningState"] == "Creating"  # type: ignore[index]
        first.stop(kill=True)
        second = ProvisionerProcess(
            azure_env(arm), kubeconfig=kube_config_path, log_path=tmp_path / "2.log"
        )
        with second:
            wait_for(ready(kubectl, name), 60, f"{name} Ready; log:\n{second.log_tail()}")
            assert arm.stats()["puts"][name] == 1
            kubectl("delete", "nodeclaim", name, "--wait=false")
            wait_for(lambda: get_json(kubectl, "nodeclaim", name) is None, 60, f"{name} deleted")
    finally:
        first.stop()
        kubectl("delete", "nodeclaim", name, "--wait=false", check=False)
    assert arm.pool(name) is None


def test_orphaned_pool_is_garbage_collected(
    kubectl: Callable[..., Any], arm: ArmServer, kube_config_path: Path, tmp_path: Path
) -> None:
    name = claim_name()  # a pool of ours whose NodeClaim never existed (or is long gone)
    path = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/"
        f"managedClusters/{CLUSTER}/agentPools/{name}?api-version=2026-08-01"
    )
    labels = {
        "kaito.sh/workspace": "gone",
        "karpenter.sh/nodepool": "kaito",
        "kaito.sh/creation-timestamp": "2026-01-01T00-00-00Z",
    }
    body = {"properties": {"vmSize": "Standard_NC6s_v3", "count": 1, "nodeLabels": labels}}
    reply = arm.handle("PUT", path, {"Authorization": "Bearer x"}, json.dumps(body).encode())
    assert reply.status == 201
    wait_for(lambda: get_json(kubectl, "node", node_name(name)), 30, "orphan's node registered")
    env = {
        **azure_env(arm),
        "KAITO_PROVISIONER_GC_INTERVAL_SECONDS": "2",
        "KAITO_PROVISIONER_GC_GRACE_SECONDS": "0",
    }
    with ProvisionerProcess(env, kubeconfig=kube_config_path, log_path=tmp_path / "gc.log") as proc:
        wait_for(lambda: arm.pool(name) is None, 60, f"orphan collected; log:\n{proc.log_tail()}")
        wait_for(lambda: get_json(kubectl, "node", node_name(name)) is None, 30, "orphan node gone")
