"""A Workspace that needs several nodes, through the reconciler: N NodeClaims, then a StatefulSet
whose leader's config carries vLLM's multi-node engine arguments, Services for the leader."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from kaito_controller.engine.executor import Reconciler
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings
from kaito_controller.testing import satisfy

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "default", "workspace-deepseek-r1"


async def test_deepseek_r1_on_four_h100_nvl_nodes() -> None:
    client = MemoryKubeClient()
    client.put(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": NAME, "namespace": NS, "uid": "u1", "generation": 1},
            "resource": {
                "count": 6,  # deprecated; KAITO's example says 6, the estimator sizes 4
                "instanceType": "Standard_NC80adis_H100_v5",
                "labelSelector": {"matchLabels": {"apps": "deepseek-r1"}},
            },
            "inference": {"preset": {"name": "deepseek-r1-0528"}},
        }
    )
    settings = ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    claims = client.of_kind("NodeClaim")
    assert len(claims) == 4
    stored = client.find("Workspace", NAME, NS)
    assert stored is not None and stored["status"]["targetNodeCount"] == 4
    assert client.of_kind("StatefulSet") == []  # nothing runs until the nodes are Ready
    for claim in claims:
        ready, node = satisfy(claim, gpus=2)
        client.put(ready)
        client.put(node)
    await rec.reconcile(NS, NAME)
    (sts,) = client.of_kind("StatefulSet")
    assert client.of_kind("Deployment") == []
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["serviceName"] == f"{NAME}-headless"
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    (cm,) = [c for c in client.of_kind("ConfigMap") if c["metadata"]["name"].startswith(NAME)]
    cfg = yaml.safe_load(next(iter(cm["data"].values())))
    assert cfg["tensor_parallel_size"] == 2
    expected = {
        "pipeline_parallel_size": 4,
        "nnodes": 4,
        "node_rank": 0,
        "master_addr": f"{NAME}-0.{NAME}-headless.{NS}.svc.cluster.local",
        "master_port": 29501,
        "distributed_executor_backend": "mp",
    }
    engine = cfg["vllm_engine_args"]
    assert {k: engine.get(k) for k in expected} == expected
    services = {s["metadata"]["name"]: s for s in client.of_kind("Service")}
    assert set(services) == {NAME, f"{NAME}-headless"}
    assert services[NAME]["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"{NAME}-0"
