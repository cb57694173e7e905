"""A Phi-3 Workspace becomes ready with the gpu-provisioner's *Azure* provider (real Azure SDK
against the local ARM server, which registers the pool's node as AKS would), with both the
controller and the provisioner running as their charts' ServiceAccounts (so both charts' RBAC,
including the azure-mode ClusterRole, is exercised). The KWOK-provider and no-provisioner (BYO)
variants are covered by test_workspace_controller.py; swapping is documented in
packages/gpu-provisioner/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_controller.testing import ControllerProcess, free_port
from kaito_e2e.charts import Release, operators_as_processes
from kaito_gpu_provisioner.testing.aks_nodes import node_name
from kaito_gpu_provisioner.testing.arm_server import ArmServer, KubeNodeSink
from kaito_gpu_provisioner.testing.e2e import get_json, wait_for
from kaito_gpu_provisioner.testing.runner import ProvisionerProcess

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
# Same release as test_workspace_controller.py: the chart's webhook configuration name is
# cluster-wide, so two releases cannot coexist (the suites run one after the other).
WS_RELEASE = WS_NS = "kaito-workspace"
PROV_RELEASE = PROV_NS = "gpu-prov-azure"
SUB, RG, CLUSTER = "00000000-0000-0000-0000-0000000000bb", "rg-kaito", "aks-local"
Kubectl = Callable[..., Any]


@pytest.fixture(scope="module")
def stack(
    kubectl: Kubectl,
    helm: Callable[..., Any],
    kube_config_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("provisioner-workspace")
    port = free_port()
    controller = Release(
        WS_RELEASE, WS_NS, {"cloudProvider": "azure", "webhook.url": f"https://127.0.0.1:{port}"}
    )
    provisioner = Release(
        PROV_RELEASE,
        PROV_NS,
        {
            "provider": "azure",
            "azure.subscriptionId": SUB,
            "azure.resourceGroup": RG,
            "azure.clusterName": CLUSTER,
            "workloadIdentity.clientId": "00000000-0000-0000-0000-00000000c1d0",
        },
    )
    with operators_as_processes(
        kubectl, helm, kube_config_path, work, controller=controller, provisioner=provisioner
    ) as (controller_kubeconfig, provisioner_kubeconfig):
        yield {
            "work": work,
            "port": port,
            "controller_kubeconfig": controller_kubeconfig,
            "provisioner_kubeconfig": provisioner_kubeconfig,
        }


@pytest.fixture(scope="module")
def arm(kube_config_path: Path, stack: dict[str, Any]) -> Iterator[ArmServer]:
    with ArmServer(
        cert_dir=stack["work"] / "arm", node_sink=KubeNodeSink(str(kube_config_path))
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def running(
    stack: dict[str, Any], arm: ArmServer
) -> Iterator[tuple[ControllerProcess, ProvisionerProcess]]:
    controller = ControllerProcess(
        {
            "KAITO_CONTROLLER_RELEASE_NAMESPACE": WS_NS,
            "KAITO_CONTROLLER_CLOUD_PROVIDER": "azure",
            "KAITO_CONTROLLER_WEBHOOK_LISTEN_ADDRESS": "127.0.0.1",
            "KAITO_CONTROLLER_WEBHOOK_PORT": str(stack["port"]),
            "KAITO_CONTROLLER_WEBHOOK_HOSTS": '["127.0.0.1"]',
            "KAITO_CONTROLLER_WEBHOOK_CERT_DIR": str(stack["work"] / "certs"),
            "KAITO_CONTROLLER_WEBHOOK_CERT_SECRET": f"{WS_RELEASE}-webhook-cert",
            "KAITO_CONTROLLER_NOT_READY_REQUEUE_SECONDS": "2",
            "KAITO_CONTROLLER_LOG_FORMAT": "text",
        },
        kubeconfig=stack["controller_kubeconfig"],
        log_path=stack["work"] / "controller.log",
    )
    provisioner = ProvisionerProcess(
        {
            "KAITO_PROVISIONER_PROVIDER": "azure",
            "KAITO_PROVISIONER_AZURE__SUBSCRIPTION_ID": SUB,
            "KAITO_PROVISIONER_AZURE__RESOURCE_GROUP": RG,
            "KAITO_PROVISIONER_AZURE__CLUSTER_NAME": CLUSTER,
            "KAITO_PROVISIONER_AZURE__ARM_ENDPOINT": arm.url,
            "KAITO_PROVISIONER_AZURE__ARM_CA_BUNDLE": str(arm.ca_path),
            "KAITO_PROVISIONER_AZURE__CREDENTIAL": "static-token",
            "KAITO_PROVISIONER_AZURE__STATIC_TOKEN": "e2e",
            "KAITO_PROVISIONER_AZURE__POLLING_INTERVAL_SECONDS": "0.5",
        },
        kubeconfig=stack["provisioner_kubeconfig"],
        log_path=stack["work"] / "provisioner.log",
    )
    controller.start()
    try:
        with provisioner:
            yield controller, provisioner
    finally:
        controller.stop()


def test_phi3_workspace_ready_with_azure_provider(
    kubectl: Kubectl,
    namespace: str,
    arm: ArmServer,
    running: tuple[ControllerProcess, ProvisionerProcess],
) -> None:
    controller, provisioner = running
    body = yaml.safe_load((REPO / "examples/quickstart/phi-3-mini-inference.yaml").read_text())
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    name = body["metadata"]["name"]

    def ready() -> Any:
        ws = get_json(kubectl, "workspace", name, "-n", namespace) or {}
        conds = {c["type"]: c["status"] for c in (ws.get("status") or {}).get("conditions") or []}
        return ws if conds.get("WorkspaceReady") == "True" else None

    ws = wait_for(
        ready, 120, f"WorkspaceReady; {controller.log_tail()}\n{provisioner.log_tail()}", 1
    )
    claims = get_json(
        kubectl,
        "nodeclaims",
        "-l",
        f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={namespace}",
    )
    (claim,) = (claims or {})["items"]
    pool = arm.pool(claim["metadata"]["name"])
    assert pool is not None and pool["properties"]["vmSize"] == "Standard_NC6s_v3"
    assert pool["properties"]["nodeLabels"]["kaito.sh/workspace"] == name
    assert claim["status"]["nodeName"] == node_name(claim["metadata"]["name"])
    assert ws["status"]["workerNodes"] == [claim["status"]["nodeName"]]
    kubectl("delete", "workspace", name, "-n", namespace, "--wait=true", "--timeout=120s")
    wait_for(lambda: arm.pool(claim["metadata"]["name"]) is None, 60, "agent pool deleted")
    wait_for(
        lambda: get_json(kubectl, "node", node_name(claim["metadata"]["name"])) is None,
        60,
        "node gone",
    )
