"""What a Workspace written for KAITO gets here: its ConfigMaps checked at admission as KAITO
checks them, warnings instead of refusals for what KAITO admits (gated model without a token,
the deprecated ``resource.count``), the validated annotations honoured (performance mode, node
image family), and a clear condition when a gated model's download fails."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from kaito_controller.engine.executor import Reconciler
from kaito_controller.engine.workers import Runtime
from kaito_controller.handlers.kopf_handlers import _read_configmaps
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.reconcile.inference import server_config
from kaito_controller.reconcile.sizing import Sizing
from kaito_controller.settings import ControllerSettings
from kaito_controller.testing import satisfy_all
from kaito_controller.webhook.admission import (
    admission_errors,
    admission_warnings,
    configmaps_to_check,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "default", "workspace-phi-3-mini"
# KAITO's own example config (examples/inference/kaito_workspace_tool_calling.yaml).
KAITO_CONFIG = """\
# Maximum number of steps to find the max available seq len fitting in the GPU memory.
max_probe_steps: 6

vllm:
  cpu-offload-gb: 0
  swap-space: 4
  max-model-len: 4096
  tool-call-parser: phi4_mini_json
"""
Example = Callable[..., dict[str, Any]]


def _cm(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _with_config(example: Example, name: str = "my-config") -> dict[str, Any]:
    ws = example("phi-3-mini-inference.yaml")
    ws["inference"]["config"] = name
    return ws


# --- the ConfigMaps inference.config and tuning.config name -------------------------------------


def test_a_kaito_inference_config_is_admitted(example: Example) -> None:
    ws = _with_config(example)
    cms = {"my-config": _cm("my-config", {"inference_config.yaml": KAITO_CONFIG})}
    assert admission_errors(ws, None, nap_enabled=True, configmaps=cms) == []


@pytest.mark.parametrize(
    ("configmap", "fragment"),
    [
        (None, "ConfigMap 'my-config' not found in namespace 'default'"),
        (_cm("my-config", {"other.yaml": ""}), "has no key 'inference_config.yaml'"),
        (_cm("my-config", {"inference_config.yaml": "vllm: ["}), "is not YAML"),
        (_cm("my-config", {"inference_config.yaml": "bogus: 1"}), "unknown key 'bogus'"),
        (
            _cm("my-config", {"inference_config.yaml": "vllm:\n  max-model-len: 8192\n"}),
            "max-model-len 8192 exceeds phi-3-mini-4k-instruct's context window of 4096",
        ),
    ],
)
def test_a_bad_inference_config_is_refused_on_the_field(
    example: Example, configmap: dict[str, Any] | None, fragment: str
) -> None:
    ws = _with_config(example)
    (error,) = admission_errors(ws, None, nap_enabled=True, configmaps={"my-config": configmap})
    assert error.startswith("inference.config: ")
    assert fragment in error


def test_a_config_that_could_not_be_read_is_not_checked(example: Example) -> None:
    # The handler leaves out what it could not read (no permission, API error).
    assert admission_errors(_with_config(example), None, nap_enabled=True, configmaps={}) == []


@pytest.mark.parametrize(
    ("configmap", "fragment"),
    [
        (None, "ConfigMap 'my-qlora' not found in namespace 'default'"),
        (_cm("my-qlora", {"x": ""}), "has no key 'training_config.yaml'"),
    ],
)
def test_a_bad_tuning_config_is_refused_on_the_field(
    example: Example, configmap: dict[str, Any] | None, fragment: str
) -> None:
    ws = example("phi-3-qlora-tuning.yaml")
    ws["tuning"]["config"] = "my-qlora"
    (error,) = admission_errors(ws, None, nap_enabled=True, configmaps={"my-qlora": configmap})
    assert error.startswith("tuning.config: ") and fragment in error
    good = {"my-qlora": _cm("my-qlora", {"training_config.yaml": "training_config: {}"})}
    assert admission_errors(ws, None, nap_enabled=True, configmaps=good) == []


def test_configmaps_are_read_on_create_and_when_the_reference_changes(example: Example) -> None:
    ws = _with_config(example)
    assert configmaps_to_check(ws, None) == ("default", ["my-config"])
    # An update that keeps the reference (finalizer, adapters) is not blocked by a deleted one.
    assert configmaps_to_check(ws, copy.deepcopy(ws)) == ("default", [])
    moved = _with_config(example, "other-config")
    assert configmaps_to_check(moved, ws) == ("default", ["other-config"])
    assert configmaps_to_check(example("phi-3-mini-inference.yaml"), None) == ("default", [])


async def test_the_handler_reads_the_named_configmaps_in_the_workspace_namespace(
    example: Example,
) -> None:
    client = MemoryKubeClient()
    client.put({**_cm("my-config", {"inference_config.yaml": ""}), "metadata": {
        "name": "my-config", "namespace": NS}})  # fmt: skip
    client.put({**_cm("my-config", {}), "metadata": {"name": "my-config", "namespace": "other"}})
    runtime = cast(Runtime, SimpleNamespace(reconciler=SimpleNamespace(client=client)))
    found = await _read_configmaps(runtime, _with_config(example), None)
    assert list(found) == ["my-config"]
    assert found["my-config"] is not None
    assert found["my-config"]["metadata"]["namespace"] == NS
    missing = await _read_configmaps(runtime, _with_config(example, "absent"), None)
    assert missing == {"absent": None}


# --- warnings for what KAITO admits -----------------------------------------------------------------


def test_gated_model_without_secret_is_admitted_with_a_warning(example: Example) -> None:
    ws = example("phi-3-mini-inference.yaml")
    ws["resource"]["instanceType"] = "Standard_NC24ads_A100_v4"
    ws["inference"]["preset"] = {"name": "llama-3.1-8b-instruct"}
    assert admission_errors(ws, None, nap_enabled=True) == []
    (warning,) = admission_warnings(ws)
    assert warning.startswith("inference.preset.presetOptions.modelAccessSecret: ")
    assert "meta-llama/Llama-3.1-8B-Instruct is a gated" in warning


def test_quick_start_has_no_warning(example: Example) -> None:
    assert admission_warnings(example("phi-3-mini-inference.yaml")) == []


# --- annotations KAITO validates: refused when unknown, honoured when known --------------------


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("kaito.sh/node-image-family", "windows", "unsupported node image family 'windows'"),
        ("kaito.sh/performance-mode", "fast", "'fast' is not a performance mode"),
        ("kaito.sh/use-local-weights", "yes", '\'yes\' must be "true" or "false"'),
        ("kaito.sh/use-local-weights", "true", "are not supported"),
    ],
)
def test_unknown_annotation_values_are_refused_naming_the_annotation(
    example: Example, key: str, value: str, fragment: str
) -> None:
    ws = example("phi-3-mini-inference.yaml")
    ws["metadata"]["annotations"] = {key: value}
    (error,) = admission_errors(ws, None, nap_enabled=True)
    assert error.startswith(f"metadata.annotations[{key}]: ") and fragment in error


def _sizing() -> Sizing:
    return Sizing(
        model="m",
        served_model_name="s",
        runtime="vllm",
        node_count=1,
        gpus_per_node=1,
        server_config={"vllm_engine_args": {"tokenizer_mode": "mistral"}},
    )


def test_performance_mode_becomes_the_vllm_flag() -> None:
    cfg = server_config(_sizing(), "vllm", "s", (), {}, performance_mode="throughput")
    assert cfg["vllm_engine_args"] == {
        "tokenizer_mode": "mistral",
        "performance_mode": "throughput",
    }
    balanced = server_config(_sizing(), "vllm", "s", (), {}, performance_mode="balanced")
    assert balanced["vllm_engine_args"] == {"tokenizer_mode": "mistral"}
    other = server_config(_sizing(), "transformers", "s", (), {}, performance_mode="throughput")
    assert "vllm_engine_args" not in other


def test_user_engine_args_are_merged_into_the_plans() -> None:
    user = {"vllm_engine_args": {"cpu_offload_gb": 0}}
    cfg = server_config(_sizing(), "vllm", "s", (), user)
    assert cfg["vllm_engine_args"] == {"tokenizer_mode": "mistral", "cpu_offload_gb": 0}


# --- the controller: node image family, and a gated download that fails -----------------------


@pytest.fixture
def settings() -> ControllerSettings:
    return ControllerSettings(webhook_enabled=False, release_namespace="kaito-workspace")


async def test_node_image_family_annotation_reaches_the_nodeclaim(
    example: Example, settings: ControllerSettings
) -> None:
    client = MemoryKubeClient()
    ws = example("phi-3-mini-inference.yaml")
    ws["metadata"]["annotations"] = {"kaito.sh/node-image-family": "AzureLinux"}
    client.put(ws)
    await Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW).reconcile(NS, NAME)
    (claim,) = client.of_kind("NodeClaim")
    assert claim["metadata"]["annotations"]["kaito.sh/node-image-family"] == "azurelinux"


def _crash_looping_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{NAME}-abc",
            "namespace": NS,
            "labels": {"kaito.sh/workspace": NAME},
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "inference",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "message": "401 Client Error: gated repo"}
                    },
                }
            ],
        },
    }


@pytest.mark.parametrize("secret", [None, "hf-token"])
async def test_gated_model_without_secret_says_so_when_the_server_keeps_failing(
    example: Example, settings: ControllerSettings, secret: str | None
) -> None:
    client = MemoryKubeClient()
    ws = example("phi-3-mini-inference.yaml")
    ws["resource"]["instanceType"] = "Standard_NC24ads_A100_v4"
    ws["inference"]["preset"] = {"name": "llama-3.1-8b-instruct"}
    if secret:
        ws["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": secret}
    client.put(ws)
    rec = Reconciler(client, settings, PresetsCatalog(), clock=lambda: NOW)
    await rec.reconcile(NS, NAME)
    satisfy_all(client)
    await rec.reconcile(NS, NAME)
    client.put(_crash_looping_pod())
    await rec.reconcile(NS, NAME)
    stored = client.find("Workspace", NAME, NS)
    assert stored is not None
    (cond,) = [c for c in stored["status"]["conditions"] if c["type"] == "InferenceReady"]
    assert cond["status"] == "False"
    if secret:
        assert cond["reason"] == "ContainerCrashLoopBackOff"
        assert "401 Client Error" in cond["message"]
    else:
        assert cond["reason"] == "ModelAccessSecretMissing"
        assert cond["message"].startswith("inference.preset.presetOptions.modelAccessSecret: ")
        assert "meta-llama/Llama-3.1-8B-Instruct is a gated" in cond["message"]


def test_kaito_config_parses_as_the_controller_will(example: Example) -> None:
    # The same text through the controller's translation: KAITO's probe key is dropped.
    from kaito_controller.reconcile.inference import translate_user_config

    got = translate_user_config(yaml.safe_load(KAITO_CONFIG))
    assert "max_probe_steps" not in got
    assert got["max_model_len"] == 4096 and got["tool_call_parser"] == "phi4_mini_json"
    assert got["vllm_engine_args"] == {"cpu_offload_gb": 0, "swap_space": 4}
