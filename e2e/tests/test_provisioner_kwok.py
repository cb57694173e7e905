"""gpu-provisioner with the KWOK provider on the local cluster, running as a ServiceAccount bound
to the chart's ClusterRole (so the RBAC is proven sufficient): NodeClaim in -> fake GPU node with
the SKU's shape, the claim's labels and taints; conditions True in order; delete removes both."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kaito_gpu_provisioner.testing.e2e import ORDER, condition_status, get_json, nodeclaim, wait_for
from kaito_gpu_provisioner.testing.runner import ProvisionerProcess, service_account_kubeconfig

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gpu-provisioner"


@pytest.fixture(scope="session")
def nodeclaim_crd(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "-f", str(CHART / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/nodeclaims.karpenter.sh", "--timeout=60s")


@pytest.fixture
def sa_kubeconfig(
    kubectl: Callable[..., Any],
    helm: Callable[..., Any],
    namespace: str,
    kube_config_path: Path,
    tmp_path: Path,
    nodeclaim_crd: None,
) -> Iterator[Path]:
    """A kubeconfig for a ServiceAccount bound to the chart's own ClusterRole (kwok provider)."""
    release = f"gp-{namespace[-6:]}"
    rendered = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "provider=kwok",
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/clusterrole.yaml",
    ).stdout
    kubectl("apply", "-f", "-", input=rendered)
    token = kubectl(
        "create", "token", f"{release}-gpu-provisioner", "-n", namespace, "--duration=1h"
    )
    yield service_account_kubeconfig(
        kube_config_path, token.stdout.strip(), tmp_path / "sa.kubeconfig"
    )
    kubectl("delete", "clusterrole,clusterrolebinding", f"{release}-gpu-provisioner", check=False)


def test_kwok_provider_lifecycle_with_chart_rbac(
    kubectl: Callable[..., Any], sa_kubeconfig: Path, tmp_path: Path
) -> None:
    name = f"wsk{secrets.token_hex(4)}"
    env = {"KAITO_PROVISIONER_PROVIDER": "kwok", "KAITO_PROVISIONER_GC_INTERVAL_SECONDS": "3600"}
    with ProvisionerProcess(env, kubeconfig=sa_kubeconfig, log_path=tmp_path / "gp.log") as proc:
        kubectl("apply", "-f", "-", input=json.dumps(nodeclaim(name)))
        try:
            claim = wait_for(
                lambda: (
                    (c := get_json(kubectl, "nodeclaim", name))
                    and condition_status(c).get("Ready") == "True"
                    and c
                ),
                60,
                f"nodeclaim {name} Ready; log:\n{proc.log_tail()}",
            )
            assert "karpenter.sh/termination" in claim["metadata"]["finalizers"]
            status = claim["status"]
            assert status["providerID"] == f"kwok://{name}"
            assert status["nodeName"] == name
            times = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
            assert [times[t] for t in ORDER] == sorted(times[t] for t in ORDER)
            node = get_json(kubectl, "node", name)
            assert node is not None
            labels = node["metadata"]["labels"]
            assert labels["kaito.sh/workspace"] == "phi-3"
            assert labels["karpenter.sh/nodepool"] == "kaito"
            assert labels["karpenter.sh/registered"] == "true"
            assert labels["karpenter.sh/initialized"] == "true"
            assert labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
            assert labels["nvidia.com/gpu.product"].startswith("Tesla-V100")
            assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
            assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in node["spec"]["taints"]
            assert node["spec"]["providerID"] == f"kwok://{name}"
        finally:
            kubectl("delete", "nodeclaim", name, "--wait=false", check=False)
        wait_for(lambda: get_json(kubectl, "nodeclaim", name) is None, 60, f"{name} deleted")
        assert get_json(kubectl, "node", name) is None
