"""The tuning path: template copy, the Job contract of the tuning image, Job replacement on an
input change, and JobStarted / WorkspaceSucceeded from the Job's status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from kaito_controller.engine.executor import Reconciler
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings
from kaito_controller.testing import satisfy, satisfy_all

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "default", "workspace-tuning-phi-3"
TEMPLATE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "qlora-params-template", "namespace": "kaito-workspace"},
    "data": {
        "training_config.yaml": "training_config:\n  QuantizationConfig: {load_in_4bit: true}\n"
    },
}


@pytest.fixture
def world(example: Callable[..., dict[str, Any]]) -> tuple[MemoryKubeClient, Reconciler]:
    client = MemoryKubeClient()
    client.put(example("phi-3-qlora-tuning.yaml"))
    client.put(TEMPLATE)
    settings = ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")
    return client, Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)


async def _to_job(client: MemoryKubeClient, rec: Reconciler) -> dict[str, Any]:
    await rec.reconcile(NS, NAME)
    for claim in client.of_kind("NodeClaim"):
        ready, node = satisfy(claim)
        client.put(ready)
        client.put(node)
    await rec.reconcile(NS, NAME)
    job = client.find("Job", NAME, NS)
    assert job is not None
    return job


def _cond(client: MemoryKubeClient, type_: str) -> dict[str, Any]:
    ws = client.find("Workspace", NAME, NS)
    assert ws is not None
    return next(c for c in ws["status"]["conditions"] if c["type"] == type_)


async def test_job_follows_the_tuning_image_contract(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    client, rec = world
    job = await _to_job(client, rec)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    inits = {c["name"]: c for c in pod["initContainers"]}
    assert inits["data-fetcher"]["command"] == ["kaito-fetch-input"]
    assert inits["data-fetcher"]["args"][0] == "--urls" and inits["data-fetcher"]["args"][-2:] == [
        "--dest",
        "/mnt/data",
    ]
    assert inits["model-weights"]["command"][:3] == [
        "hf",
        "download",
        "microsoft/Phi-3-mini-128k-instruct",
    ]
    main = pod["containers"][0]
    args = main["args"]
    assert main["command"] == ["kaito-tune"]
    # The quick start's V100: the CUDA 13 tuning image has no sm_70, the CUDA 12 one does.
    assert main["image"] == "ghcr.io/kaito-py/kaito-tuning-cu12:0.1.0"
    assert args[args.index("--method") + 1] == "qlora"
    assert args[args.index("--push-image") + 1] == "registry.local:5000/phi-3-adapter:0.0.1"
    assert args[args.index("--docker-config") + 1] == "/mnt/registry/config.json"
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["registry"]["secret"]["secretName"] == "registry-push-secret"
    assert vols["config"]["configMap"]["name"] == f"{NAME}-tuning-config"
    copied = client.find("ConfigMap", f"{NAME}-tuning-config", NS)
    assert copied is not None and copied["data"] == TEMPLATE["data"]
    assert copied["metadata"]["ownerReferences"][0]["kind"] == "Workspace"  # removed with it
    assert _cond(client, "JobStarted")["status"] == "False"


async def test_a_model_override_path_is_copied_from_its_image(
    example: Callable[..., dict[str, Any]],
) -> None:
    """Local clusters tune the tiny model: the init container copies the override's files from
    the image that holds them instead of downloading the preset's weights."""
    client = MemoryKubeClient()
    client.put(example("phi-3-qlora-tuning.yaml"))
    client.put(TEMPLATE)
    settings = ControllerSettings(
        webhook_enabled=False,
        release_namespace="kaito-workspace",
        model_override="/opt/kaito/tiny-model/",
        model_override_image="registry.local/kaito-local/tiny-model:1",
    )
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    job = await _to_job(client, rec)
    pod = job["spec"]["template"]["spec"]
    weights = next(c for c in pod["initContainers"] if c["name"] == "model-weights")
    assert weights["image"] == "registry.local/kaito-local/tiny-model:1"
    assert weights["command"] == ["cp", "-rL", "/opt/kaito/tiny-model/.", "/workspace/weights"]
    assert weights["env"] == []  # no Hugging Face token travels to a copy
    args = pod["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/workspace/weights"


async def test_job_status_drives_the_conditions(world: tuple[MemoryKubeClient, Reconciler]) -> None:
    client, rec = world
    job = await _to_job(client, rec)
    job["status"] = {"active": 1}
    client.put(job)
    await rec.reconcile(NS, NAME)
    assert _cond(client, "JobStarted")["status"] == "True"
    job = client.find("Job", NAME, NS)
    job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}  # type: ignore[index]
    client.put(job)  # type: ignore[arg-type]
    assert await rec.reconcile(NS, NAME) == 60.0
    ws = client.find("Workspace", NAME, NS)
    assert ws["status"]["state"] == "Succeeded"  # type: ignore[index]
    assert _cond(client, "WorkspaceSucceeded")["status"] == "True"
    assert "jobStarted" in ws["status"]["phaseDurations"]  # type: ignore[index]


async def test_failed_job_reports_the_termination_message(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    client, rec = world
    job = await _to_job(client, rec)
    job["status"] = {
        "failed": 3,
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    }
    client.put(job)
    client.put(
        {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{NAME}-x", "namespace": NS, "labels": {"kaito.sh/workspace": NAME}},
            "status": {"containerStatuses": [{"name": "tuning", "state": {"terminated": {"exitCode": 6,
                       "message": "RegistryAuthFailed: registry.local:5000 rejected user bob"}}}]},
        }
    )  # fmt: skip
    await rec.reconcile(NS, NAME)
    js = _cond(client, "JobStarted")
    assert js["reason"] == "WorkspaceTuningJobStatusFailed"
    assert "RegistryAuthFailed" in js["message"]
    assert client.find("Workspace", NAME, NS)["status"]["state"] == "Failed"  # type: ignore[index]


async def test_a_failed_attempt_is_reported_while_the_job_retries(
    world: tuple[MemoryKubeClient, Reconciler],
) -> None:
    """The data fetcher of the newest pod failed (an unreachable URL): the Workspace says so
    with that container's message before the Job gives up."""
    client, rec = world
    job = await _to_job(client, rec)
    job["status"] = {"active": 1, "failed": 1}
    client.put(job)
    labels = {"kaito.sh/workspace": NAME}

    def pod(name: str, created: str, message: str) -> dict[str, Any]:
        term = {"terminated": {"exitCode": 3, "message": message}}
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels, "creationTimestamp": created},
            "status": {"initContainerStatuses": [{"name": "data-fetcher", "state": term}]},
        }  # fmt: skip

    client.put(pod(f"{NAME}-old", "2026-01-01T11:00:00Z", "InputUnreachable: old attempt"))
    client.put(pod(f"{NAME}-new", "2026-01-01T11:05:00Z", "InputUnreachable: no such host"))
    await rec.reconcile(NS, NAME)
    assert _cond(client, "JobStarted")["status"] == "True"
    succeeded = _cond(client, "WorkspaceSucceeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "WorkspaceTuningJobRetrying")
    assert "container data-fetcher exited 3: InputUnreachable: no such host" in succeeded["message"]


async def test_input_change_replaces_the_job(world: tuple[MemoryKubeClient, Reconciler]) -> None:
    client, rec = world
    await _to_job(client, rec)
    ws = client.find("Workspace", NAME, NS)
    ws["tuning"]["input"]["urls"] = ["https://example.com/other.parquet"]  # type: ignore[index]
    await rec.reconcile(NS, NAME)
    assert client.find("Job", NAME, NS) is None  # deleted (in the foreground) first
    await rec.reconcile(NS, NAME)
    job = client.find("Job", NAME, NS)
    assert job is not None
    fetch = job["spec"]["template"]["spec"]["initContainers"][1]
    assert "https://example.com/other.parquet" in fetch["args"]


async def test_missing_template_is_reported(example: Callable[..., dict[str, Any]]) -> None:
    client = MemoryKubeClient()
    client.put(example("phi-3-qlora-tuning.yaml"))
    rec = Reconciler(
        client, ControllerSettings(webhook_enabled=False), PresetsCatalog(), clock=lambda: NOW
    )
    await _to_job_without_job(client, rec)
    assert _cond(client, "JobStarted")["reason"] == "TuningTemplateNotFound"


async def _to_job_without_job(client: MemoryKubeClient, rec: Reconciler) -> None:
    await rec.reconcile(NS, NAME)
    for claim in client.of_kind("NodeClaim"):
        ready, node = satisfy(claim)
        client.put(ready)
        client.put(node)
    await rec.reconcile(NS, NAME)
    assert client.find("Job", NAME, NS) is None


async def test_tuning_through_the_read_cache_finds_the_release_template(
    example: Callable[..., dict[str, Any]],
) -> None:
    from kaito_controller.handlers.watches import watches
    from kaito_controller.k8s.cache import CachedKubeClient

    api = MemoryKubeClient()
    api.put(example("phi-3-qlora-tuning.yaml"))
    api.put(TEMPLATE)
    settings = ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")
    cache = CachedKubeClient(api, [(w.api_version, w.kind, w.selector) for w in watches(settings)])
    await cache.prime()
    rec = Reconciler(cache, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    satisfy_all(api)
    await cache.prime()  # what the watches would have delivered
    await rec.reconcile(NS, NAME)
    assert api.find("Job", NAME, NS) is not None  # the release namespace's template was found
    assert cache.api_reads >= 1
