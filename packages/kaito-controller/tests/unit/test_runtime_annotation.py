"""The controller uses the parsed kaito.sh/runtime annotation (kaito_presets.runtime), so a
spelling the webhook accepts sizes the same way, and an unknown value names the annotation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from kaito_controller.engine.executor import Reconciler
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings
from kaito_controller.testing import satisfy_all

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "default", "workspace-phi-3-mini"


async def _reconciled(example: Callable[..., dict[str, Any]], annotation: str) -> MemoryKubeClient:
    client = MemoryKubeClient()
    ws = example("phi-3-mini-inference.yaml")
    ws["metadata"].setdefault("annotations", {})["kaito.sh/runtime"] = annotation
    client.put(ws)
    settings = ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    satisfy_all(client)
    await rec.reconcile(NS, NAME)
    return client


@pytest.mark.parametrize("annotation", ["Transformers", " transformers "])
async def test_odd_spellings_size_the_runtime_they_name(
    example: Callable[..., dict[str, Any]], annotation: str
) -> None:
    client = await _reconciled(example, annotation)
    cm = client.find("ConfigMap", f"{NAME}-inference-config", NS)
    assert cm is not None
    assert yaml.safe_load(cm["data"]["inference_config.yaml"])["backend"] == "transformers"


async def test_blank_annotation_is_the_default_runtime(
    example: Callable[..., dict[str, Any]],
) -> None:
    client = await _reconciled(example, "")
    cm = client.find("ConfigMap", f"{NAME}-inference-config", NS)
    assert cm is not None
    assert yaml.safe_load(cm["data"]["inference_config.yaml"])["backend"] in (
        "vllm",
        "transformers",
    )


async def test_unknown_runtime_names_the_annotation(
    example: Callable[..., dict[str, Any]],
) -> None:
    client = MemoryKubeClient()
    ws = example("phi-3-mini-inference.yaml")
    ws["metadata"].setdefault("annotations", {})["kaito.sh/runtime"] = "tensorrt"
    client.put(ws)
    settings = ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")
    await Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW).reconcile(NS, NAME)
    stored = client.find("Workspace", NAME, NS)
    assert stored is not None
    ready = next(c for c in stored["status"]["conditions"] if c["type"] == "ResourceReady")
    assert ready["status"] == "False"
    assert ready["message"].startswith("metadata.annotations[kaito.sh/runtime]: 'tensorrt'")
