"""Observe-plan-execute against the in-memory API: the controller converges, is idempotent,
survives a crash between writes, reports NodeClaim failures, and cleans up on delete."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from kaito_controller.engine.executor import Reconciler
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings
from kaito_controller.testing import rollout_done, satisfy

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "default", "workspace-phi-3-mini"


@pytest.fixture
def settings() -> ControllerSettings:
    return ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")


@pytest.fixture
def world(
    example: Callable[..., dict[str, Any]], settings: ControllerSettings
) -> tuple[MemoryKubeClient, Reconciler]:
    client = MemoryKubeClient()
    client.put(example("phi-3-mini-inference.yaml"))
    return client, Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)


def provision(client: MemoryKubeClient) -> None:
    for claim in client.of_kind("NodeClaim"):
        if not claim.get("status"):
            ready, node = satisfy(claim)
            client.put(ready)
            client.put(node)


def status(client: MemoryKubeClient, name: str = NAME) -> dict[str, Any]:
    ws = client.find("Workspace", name, NS)
    assert ws is not None
    return ws.get("status") or {}


def cond(client: MemoryKubeClient, type_: str, name: str = NAME) -> dict[str, Any]:
    return next(c for c in status(client, name)["conditions"] if c["type"] == type_)


async def test_inference_quick_start_converges(world: tuple[MemoryKubeClient, Reconciler]) -> None:
    client, rec = world
    assert await rec.reconcile(NS, NAME) == 5.0
    ws = client.find("Workspace", NAME, NS)
    assert ws is not None and "workspace.finalizer.kaito.sh" in ws["metadata"]["finalizers"]
    assert len(client.of_kind("NodeClaim")) == 1
    assert client.find("Deployment", NAME, NS) is None  # nothing before the nodes are ready
    assert cond(client, "ResourceReady")["status"] == "False"

    provision(client)
    await rec.reconcile(NS, NAME)
    dep = client.find("Deployment", NAME, NS)
    svc = client.find("Service", NAME, NS)
    assert dep is not None and svc is not None
    assert client.find("ConfigMap", f"{NAME}-inference-config", NS) is not None
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        (80, 5000),
        (29500, 29500),
    ]
    assert cond(client, "ResourceReady")["status"] == "True"
    assert cond(client, "InferenceReady")["status"] == "False"

    client.put(rollout_done(dep))
    await rec.reconcile(NS, NAME)
    st = status(client)
    assert st["state"] == "Ready"
    assert cond(client, "WorkspaceReady")["status"] == "True"
    assert cond(client, "WorkspaceSucceeded")["status"] == "True"
    assert set(st["phaseDurations"]) == {"nodeProvisioning", "workloadReady"}
    assert st["workerNodes"] == [f"node-{client.of_kind('NodeClaim')[0]['metadata']['name']}"]
    reasons = [e["reason"] for e in client.of_kind("Event")]
    assert {"NodeClaimCreated", "ResourceReady", "InferenceReady"} <= set(reasons)


async def test_steady_state_writes_nothing(world: tuple[MemoryKubeClient, Reconciler]) -> None:
    client, rec = world
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    client.put(rollout_done(client.find("Deployment", NAME, NS)))  # type: ignore[arg-type]
    await rec.reconcile(NS, NAME)
    before = len(client.writes)
    assert await rec.reconcile(NS, NAME) == 60.0  # ready: only the periodic resync
    assert client.writes[before:] == []


async def test_manual_edit_of_an_owned_object_is_reverted(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    client, rec = world
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    svc = client.find("Service", NAME, NS)
    assert svc is not None
    svc["spec"]["ports"][0]["targetPort"] = 8080
    await rec.reconcile(NS, NAME)
    assert client.find("Service", NAME, NS)["spec"]["ports"][0]["targetPort"] == 5000  # type: ignore[index]


async def test_crash_after_creating_the_nodeclaim_creates_no_duplicate(
    world: tuple[MemoryKubeClient, Reconciler], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rec = world

    async def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("killed mid-reconcile")

    monkeypatch.setattr(client, "patch_status", crash)
    with pytest.raises(RuntimeError):
        await rec.reconcile(NS, NAME)
    monkeypatch.undo()
    claims = [c["metadata"]["name"] for c in client.of_kind("NodeClaim")]
    fresh = Reconciler(client, rec.settings, PresetsCatalog(), clock=lambda: NOW)  # "restarted"
    await fresh.reconcile(NS, NAME)
    await fresh.reconcile(NS, NAME)
    assert [c["metadata"]["name"] for c in client.of_kind("NodeClaim")] == claims


async def test_launch_failure_is_reported_on_the_workspace(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    client, rec = world
    await rec.reconcile(NS, NAME)
    claim = copy.deepcopy(client.of_kind("NodeClaim")[0])
    claim["status"] = {
        "conditions": [
            {"type": "Launched", "status": "False", "reason": "InsufficientCapacity",
             "message": "creating agent pool: quota exceeded for Standard_NC6s_v3 in eastus"},
        ]
    }  # fmt: skip
    client.put(claim)
    await rec.reconcile(NS, NAME)
    rr = cond(client, "ResourceReady")
    assert rr["reason"] == "InsufficientCapacity"
    assert "quota exceeded for Standard_NC6s_v3" in rr["message"]
    warnings = [e for e in client.of_kind("Event") if e["type"] == "Warning"]
    assert any(e["reason"] == "InsufficientCapacity" for e in warnings)


async def test_pod_failure_reason_surfaces(world: tuple[MemoryKubeClient, Reconciler]) -> None:
    client, rec = world
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    client.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{NAME}-abc", "namespace": NS, "labels": {"kaito.sh/workspace": NAME},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "rs"}]},
            "status": {"containerStatuses": [{"name": NAME, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]},
        }
    )  # fmt: skip
    await rec.reconcile(NS, NAME)
    assert cond(client, "InferenceReady")["reason"] == "ImagePullError"
    assert status(client)["state"] == "Pending"


async def test_delete_removes_nodeclaims_then_the_finalizer(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    client, rec = world
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    ws = client.find("Workspace", NAME, NS)
    assert ws is not None
    ws["metadata"]["deletionTimestamp"] = "2026-01-01T12:05:00Z"
    assert await rec.reconcile(NS, NAME) is not None
    assert client.of_kind("NodeClaim") == []
    assert client.find("Workspace", NAME, NS) is None  # finalizer removed: gone
    assert await rec.reconcile(NS, NAME) is None


async def test_unknown_preset_is_a_spec_error_not_a_crash(
    example: Callable[..., dict[str, Any]], settings: ControllerSettings
) -> None:
    client = MemoryKubeClient()
    body = example("phi-3-mini-inference.yaml")
    body["inference"]["preset"]["name"] = "no-such-model"
    client.put(body)
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    assert await rec.reconcile(NS, NAME) == settings.resync_seconds
    rr = cond(client, "ResourceReady")
    assert rr["reason"] == "PresetNotFound" and "no-such-model" in rr["message"]
    assert client.of_kind("NodeClaim") == []


async def test_byo_mode_selects_labelled_nodes(example: Callable[..., dict[str, Any]]) -> None:
    from kaito_controller.testing import ready_node

    settings = ControllerSettings(webhook_enabled=False, node_auto_provisioning=False)
    client = MemoryKubeClient()
    body = example("phi-3-mini-inference.yaml")
    del body["resource"]["instanceType"]
    client.put(body)
    node = ready_node(
        "gpu-1",
        labels={
            "apps": "phi-3",
            "nvidia.com/gpu.product": "Tesla-V100-PCIE-16GB",
            "nvidia.com/gpu.count": "1",
        },
    )
    client.put(node)
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    assert client.of_kind("NodeClaim") == []
    assert cond(client, "ResourceReady")["status"] == "True", status(client)
    dep = client.find("Deployment", NAME, NS)
    assert dep is not None
    terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "apps", "operator": "In", "values": ["phi-3"]}
    ]
    assert not any(c["type"] == "NodeClaimReady" for c in status(client)["conditions"])


def _server_config(client: MemoryKubeClient) -> dict[str, Any]:
    import yaml

    cm = client.find("ConfigMap", f"{NAME}-inference-config", NS)
    assert cm is not None
    return yaml.safe_load(cm["data"]["inference_config.yaml"])


async def test_v100_quick_start_runs_transformers_in_the_cuda12_image(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    """phi-3-mini on one V100: the vLLM image is a CUDA 13 build without sm_70, so the plan is
    transformers in kaito-inference-cu12, next to the configured image (same registry, tag)."""
    client, rec = world
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    cfg = _server_config(client)
    assert (cfg["backend"], cfg["dtype"], cfg["max_model_len"]) == ("transformers", "float16", 4096)
    assert "gpu_memory_utilization" not in cfg and "vllm_engine_args" not in cfg
    assert cfg["model"] == "microsoft/Phi-3-mini-4k-instruct"
    dep = client.find("Deployment", NAME, NS)
    assert dep is not None
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/kaito-py/kaito-inference-cu12:0.1.0"


async def test_server_config_carries_the_estimators_plan(
    example: Callable[..., dict[str, Any]], settings: ControllerSettings
) -> None:
    """phi-3-mini on one T4: vLLM, float16, and the memory fraction the plan was sized for
    (an unset fraction lets the server fall back to its own default, for which the plan's
    max_model_len may not fit)."""
    client = MemoryKubeClient()
    ws = example("phi-3-mini-inference.yaml")
    ws["resource"]["instanceType"] = "Standard_NC4as_T4_v3"
    client.put(ws)
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    cfg = _server_config(client)
    assert cfg["backend"] == "vllm"
    assert cfg["dtype"] == "float16"
    assert cfg["gpu_memory_utilization"] == 0.9
    assert cfg["max_model_len"] == 4096
    assert cfg["tensor_parallel_size"] == 1
    assert cfg["model"] == "microsoft/Phi-3-mini-4k-instruct"
    dep = client.find("Deployment", NAME, NS)
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == settings.inference_image


async def test_model_override_swaps_weights_and_drops_vllm_only_keys(
    example: Callable[..., dict[str, Any]],
) -> None:
    settings = ControllerSettings(
        webhook_enabled=False,
        release_namespace="kaito-workspace",
        inference_backend="transformers",
        model_override="/opt/kaito/tiny-model",
    )
    client = MemoryKubeClient()
    client.put(example("phi-3-mini-inference.yaml"))
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    provision(client)
    await rec.reconcile(NS, NAME)
    cfg = _server_config(client)
    assert cfg["model"] == "/opt/kaito/tiny-model"
    assert cfg["served_model_name"] == "phi-3-mini-4k-instruct"
    assert cfg["backend"] == "transformers"
    assert "gpu_memory_utilization" not in cfg and "tensor_parallel_size" not in cfg
    dep = client.find("Deployment", NAME, NS)
    assert dep is not None
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--model") + 1] == "/opt/kaito/tiny-model"
    # A smoke run keeps the configured image although the V100 plan names the CUDA 12 one.
    assert container["image"] == settings.inference_image
