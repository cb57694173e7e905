"""Catalog-aware Workspace validation: quick starts pass, catalog mistakes are field errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from kaito_api.testing.cases import (
    INVALID_CREATES,
    VALID_UPDATES,
    InvalidCase,
    UpdateCase,
    quickstart_adapter,
    quickstart_inference,
    quickstart_tuning,
)
from kaito_api.validation import parse_workspace
from kaito_presets.estimator import cheapest_fitting_sku
from kaito_presets.presets import all_presets, get_preset
from kaito_presets.validation import FieldError, catalog_warnings, validate_workspace

QUICKSTARTS = [quickstart_inference, quickstart_adapter, quickstart_tuning]


def _fields(errors: list[FieldError]) -> list[str]:
    return [e.field for e in errors]


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
@pytest.mark.parametrize("build", QUICKSTARTS, ids=lambda f: f.__name__)
def test_quickstarts_are_accepted(build: Callable[[str], dict[str, Any]], version: str) -> None:
    assert validate_workspace(build(version)) == []


def test_quickstart_with_phi3_mini_128k_and_4k_tuning_accepted() -> None:
    ws = quickstart_tuning()
    ws["tuning"]["preset"]["name"] = "phi-3-mini-4k-instruct"
    assert validate_workspace(ws) == []
    ws = quickstart_inference()
    ws["inference"]["preset"]["name"] = "phi-3-mini-128k-instruct"
    assert validate_workspace(ws) == []


@pytest.mark.parametrize("case", INVALID_CREATES, ids=lambda c: c.id)
def test_static_errors_are_kept(case: InvalidCase) -> None:
    errors = validate_workspace(case.obj)
    assert any(e.field.startswith(case.field) for e in errors), errors


@pytest.mark.parametrize("case", VALID_UPDATES, ids=lambda c: c.id)
def test_valid_updates_stay_valid(case: UpdateCase) -> None:
    assert validate_workspace(case.new, case.old) == []


def test_quickstart_adapter_on_v100_is_served_by_transformers_so_falcon_adapters_pass() -> None:
    # vLLM has no LoRA for falcon, but on a V100 the plan is transformers (peft), which has.
    ws = _with(quickstart_adapter, inference__preset__name="falcon-7b")
    ws["resource"]["instanceType"] = "Standard_NC24s_v3"
    assert validate_workspace(ws) == []


def test_adapter_strength_is_accepted_under_vllm() -> None:
    # The inference server scales lora_B into a copy, so vLLM honours strength (KAITO refuses it).
    ws = quickstart_adapter()
    ws["inference"]["adapters"][0]["strength"] = "0.5"
    assert validate_workspace(ws) == []


def _with(build: Callable[[], dict[str, Any]], **changes: Any) -> dict[str, Any]:
    obj = build()
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return obj


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown-preset",
        _with(quickstart_inference, inference__preset__name="phi-3-mini-4k"),
        "inference.preset.name",
        "did you mean 'phi-3-mini-4k-instruct'",
    ),
    (
        "hf-id-not-in-catalog",
        _with(quickstart_inference, inference__preset__name="someorg/some-model"),
        "inference.preset.name",
        "unknown preset 'someorg/some-model'",
    ),
    (
        "deprecated-preset",
        _with(quickstart_inference, inference__preset__name="phi-2"),
        "inference.preset.name",
        "deprecated",
    ),
    (
        "unknown-sku-with-nap",
        _with(quickstart_inference, resource__instanceType="Standard_NC6s_v9"),
        "resource.instanceType",
        "unknown GPU instance type 'Standard_NC6s_v9'; did you mean 'Standard_NC6s_v3'",
    ),
    (
        "missing-sku-with-nap",
        _with(quickstart_inference, resource__instanceType=None),
        "resource.instanceType",
        "required when node auto-provisioning is enabled",
    ),
    (
        "retired-sku",
        _with(quickstart_inference, resource__instanceType="Standard_NC6"),
        "resource.instanceType",
        "retired",
    ),
    (
        "sku-too-small",
        _with(
            quickstart_inference,
            inference__preset__name="qwen2.5-coder-32b-instruct",
            resource__instanceType="Standard_NC4as_T4_v3",
            metadata__annotations={"kaito.sh/runtime": "transformers"},
        ),
        # vLLM would serve it over several T4 nodes; transformers runs on one (as KAITO says).
        "metadata.annotations[kaito.sh/runtime]",
        "multi-node distributed inference is not supported with the transformers runtime: "
        "qwen2.5-coder-32b-instruct fits Standard_NC4as_T4_v3 only on",
    ),
    (
        "gpt-oss-on-t4",
        _with(
            quickstart_inference,
            inference__preset__name="gpt-oss-20b",
            resource__instanceType="Standard_NC4as_T4_v3",
        ),
        "resource.instanceType",
        "needs compute capability >= 8.0",
    ),
    (
        "bad-runtime-annotation",
        _with(quickstart_inference, metadata__annotations={"kaito.sh/runtime": "tensorrt"}),
        "metadata.annotations[kaito.sh/runtime]",
        "'tensorrt' is not a runtime",
    ),
    (
        "runtime-not-supported-by-preset",
        _with(
            quickstart_inference,
            inference__preset__name="gpt-oss-20b",
            resource__instanceType="Standard_NC24ads_A100_v4",
            metadata__annotations={"kaito.sh/runtime": "transformers"},
        ),
        "metadata.annotations[kaito.sh/runtime]",
        "cannot run on transformers",
    ),
    (
        "adapter-on-falcon-vllm",
        _with(
            quickstart_adapter,
            inference__preset__name="falcon-7b",
            resource__instanceType="Standard_NC24ads_A100_v4",
        ),
        "inference.adapters[0]",
        "vLLM does not support LoRA adapters for falcon-7b",
    ),
    (
        "tuning-unsupported-preset",
        _with(quickstart_tuning, tuning__preset__name="llama-3.1-8b-instruct"),
        "tuning.preset.name",
        "does not support tuning",
    ),
    (
        "tuning-too-small",
        _with(
            quickstart_tuning,
            tuning__preset__name="qwen2.5-coder-32b-instruct",
            tuning__method="lora",
        ),
        "resource.instanceType",
        "lora tuning of qwen2.5-coder-32b-instruct needs",
    ),
    (
        "tuning-on-pascal",
        _with(quickstart_tuning, resource__instanceType="Standard_NC6s_v2"),
        "resource.instanceType",
        "retired",
    ),
    (
        "vllm-forced-on-v100",
        _with(quickstart_inference, metadata__annotations={"kaito.sh/runtime": "vllm"}),
        "resource.instanceType",
        "phi-3-mini-4k-instruct cannot run on Standard_NC6s_v3 (1 x V100, compute capability "
        "7.0): vLLM: kaito-inference (CUDA 13.0; torch 2.13.0+cu130, vllm 0.32.0) has no kernels "
        "for V100 (compute capability 7.0, sm_70)",
    ),
]


@pytest.mark.parametrize(
    ("obj", "field", "text"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_catalog_errors(obj: dict[str, Any], field: str, text: str) -> None:
    errors = validate_workspace(obj)
    matching = [e for e in errors if e.field == field]
    assert matching, errors
    assert any(text in e.message for e in matching), matching


def test_too_small_message_suggests_skus_that_fit() -> None:
    ws = _with(
        quickstart_inference,
        inference__preset__name="llama-3.3-70b-instruct",
        inference__preset__presetOptions={"modelAccessSecret": "hf-token"},
        resource__instanceType="Standard_NC6s_v3",
    )
    (error,) = validate_workspace(ws)
    assert error.field == "resource.instanceType"
    assert "needs 135.0 GiB" in error.message
    assert "1 x 15.8 GiB V100 (14.2 GiB usable per GPU at 90%)" in error.message
    assert "instance types that fit: Standard_NC48ads_A100_v4" in error.message


def test_bring_your_own_nodes_needs_no_instance_type() -> None:
    ws = _with(quickstart_inference, resource__instanceType=None)
    assert validate_workspace(ws, nap_enabled=False) == []


@pytest.mark.parametrize("instance_type", ["Custom_GPU_Box", "Standard_NC6s_v3"])
def test_bring_your_own_nodes_refuse_an_instance_type_on_create(instance_type: str) -> None:
    # As KAITO: with your own nodes there is nothing to provision, so the field must be empty.
    ws = _with(quickstart_inference, resource__instanceType=instance_type)
    (error,) = validate_workspace(ws, nap_enabled=False)
    assert error.field == "resource.instanceType"
    assert "must be empty when node auto-provisioning is disabled" in error.message
    assert f"remove {instance_type!r}" in error.message


def test_bring_your_own_workspace_stored_with_an_instance_type_can_still_be_updated() -> None:
    # Stored before the rule (the field is immutable): updates are sized against the SKU.
    old = _with(quickstart_adapter, resource__instanceType="Standard_NC6s_v3")
    new = copy.deepcopy(old)
    new["inference"]["adapters"][0]["strength"] = "0.5"
    assert validate_workspace(new, old, nap_enabled=False) == []
    big = _with(
        quickstart_inference,
        inference__preset__name="llama-3.3-70b-instruct",
        inference__preset__presetOptions={"modelAccessSecret": "hf-token"},
        resource__instanceType="Standard_NC6s_v3",
    )
    small = _with(quickstart_inference, resource__instanceType="Standard_NC6s_v3")
    # The preset changed too (refused as immutable), and 70B does not fit a V100.
    assert "resource.instanceType" in _fields(validate_workspace(big, small, nap_enabled=False))


def test_gated_model_without_secret_is_admitted_with_a_warning() -> None:
    ws = _with(
        quickstart_inference,
        inference__preset__name="llama-3.1-8b-instruct",
        resource__instanceType="Standard_NC24ads_A100_v4",
    )
    assert validate_workspace(ws) == []
    (warning,) = catalog_warnings(parse_workspace(ws))
    assert warning.field == "inference.preset.presetOptions.modelAccessSecret"
    assert "meta-llama/Llama-3.1-8B-Instruct is a gated" in warning.message
    assert "ModelAccessSecretMissing" in warning.message
    ws["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf-token"}
    assert catalog_warnings(parse_workspace(ws)) == []


def test_deprecated_count_is_admitted_with_a_warning_and_named_when_multi_node() -> None:
    ws = _with(
        quickstart_inference,
        inference__preset__name="llama-3.3-70b-instruct",
        inference__preset__presetOptions={"modelAccessSecret": "hf-token"},
        resource__instanceType="Standard_NC80adis_H100_v5",
        resource__count=2,
    )
    assert validate_workspace(ws) == []
    (warning,) = catalog_warnings(parse_workspace(ws))
    assert warning.field == "resource.count" and "deprecated" in warning.message
    # 641 GiB of DeepSeek-R1 needs 4 of these nodes: vLLM over them, whatever count says.
    ws["inference"]["preset"] = {"name": "deepseek-r1-0528"}
    ws["resource"]["count"] = 6
    assert validate_workspace(ws) == []
    # Forcing transformers onto a multi-node model is refused on the annotation, and the
    # refusal says count does not help.
    ws["inference"]["preset"] = {"name": "llama-3.1-8b-instruct"}
    ws["resource"]["instanceType"] = "Standard_NC4as_T4_v3"
    ws["metadata"]["annotations"] = {"kaito.sh/runtime": "transformers"}
    (error,) = validate_workspace(ws)
    assert error.field == "metadata.annotations[kaito.sh/runtime]"
    assert "only on 2 nodes of Standard_NC4as_T4_v3" in error.message
    assert "resource.count: 6 (deprecated) does not change that" in error.message
    assert "Standard_NV36ads_A10_v5" in error.message  # where it fits on one node


def test_multi_node_plan_is_admitted_and_adapters_on_it_are_refused() -> None:
    ws = _with(
        quickstart_inference,
        inference__preset__name="phi-3-medium-4k-instruct",
        resource__instanceType="Standard_NC4as_T4_v3",
    )
    assert validate_workspace(ws) == []  # 3 one-T4 nodes, pipeline parallel 3
    ws["inference"]["adapters"] = [{"source": {"name": "a", "image": "reg.example.com/a:1"}}]
    (error,) = validate_workspace(ws)
    assert error.field == "inference.adapters"
    assert "needs 3 nodes of Standard_NC4as_T4_v3" in error.message


def test_bypass_annotation_skips_the_memory_check() -> None:
    ws = _with(
        quickstart_inference,
        inference__preset__name="llama-3.3-70b-instruct",
        inference__preset__presetOptions={"modelAccessSecret": "hf-token"},
        metadata__annotations={"kaito.sh/bypass-resource-checks": ""},
    )
    assert validate_workspace(ws) == []


def test_update_does_not_resize_when_nothing_sizing_related_changed() -> None:
    old = _with(
        quickstart_inference,
        inference__preset__name="llama-3.3-70b-instruct",
        inference__preset__presetOptions={"modelAccessSecret": "hf-token"},
    )
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    # Creating it is refused (too small) ...
    assert _fields(validate_workspace(old)) == ["resource.instanceType"]
    # ... but an object already stored (e.g. before a catalog change) can still be edited.
    assert validate_workspace(new, old) == []


def test_update_changing_preset_reports_immutability_once_from_static_rules() -> None:
    old = quickstart_inference()
    new = _with(quickstart_inference, inference__preset__name="phi-3-mini-128k-instruct")
    fields = _fields(validate_workspace(new, old))
    assert "inference.preset" in fields


def test_template_workspace_only_checks_the_sku() -> None:
    ws = quickstart_inference()
    ws["inference"] = {"template": {"spec": {"containers": [{"name": "x", "image": "x"}]}}}
    assert validate_workspace(ws) == []
    ws["resource"]["instanceType"] = "Standard_Nope"
    assert _fields(validate_workspace(ws)) == ["resource.instanceType"]


def test_parsed_workspace_models_are_accepted_too() -> None:
    from kaito_api.validation import parse_workspace

    assert validate_workspace(parse_workspace(quickstart_adapter("v1alpha1"))) == []
    old = parse_workspace(quickstart_inference())
    bad = _with(quickstart_inference, inference__preset__name="phi-3-mini-4k")
    # Unknown preset, and (static rule) the preset changed on update.
    fields = _fields(validate_workspace(bad, old))
    assert "inference.preset.name" in fields and "inference.preset" in fields


@pytest.mark.parametrize("preset", [p.name for p in all_presets()])
def test_every_preset_is_accepted_on_its_cheapest_sku(preset: str) -> None:
    p = get_preset(preset)
    ws = _with(
        quickstart_inference,
        inference__preset__name=preset,
        resource__instanceType=cheapest_fitting_sku(p).sku.name,
    )
    assert validate_workspace(ws) == []
    warnings = _fields(catalog_warnings(parse_workspace(ws)))
    assert warnings == (
        ["inference.preset.presetOptions.modelAccessSecret"] if p.needs_access_token else []
    )
