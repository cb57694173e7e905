"""Tuning memory, worked by hand from the catalog numbers (see tuning_estimate's docstring)."""

from __future__ import annotations

import pytest
from kaito_presets.errors import DoesNotFit
from kaito_presets.estimator import estimate_tuning
from kaito_presets.tuning_estimate import TuningNotSupported

GIB = 2**30
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4.126953125


def test_qlora_phi3_mini_on_nc6s_v3_quickstart() -> None:
    # P = 3.82e9; E = 32064 * 3072 * 2 (untied) = 197_001_216
    weights = ((3.82e9 - 197_001_216) * NF4_BITS / 8 + 197_001_216 * 2) / GIB  # 2.108 GiB
    # T = 8 * 32 * (2 * 3072 + (32 + 32) * 96) = 3_145_728 params * 16 B
    adapter = 3_145_728 * 16 / GIB
    # 1 * 1024 * (2 * 3072 * 32 + 34 * 3072 + 8 * 32064) = 1024 * 557_568 B
    activations = 1024 * 557_568 / GIB
    plan = estimate_tuning("phi-3-mini-128k-instruct", "Standard_NC6s_v3", "qlora")
    assert plan.weights_gib == pytest.approx(weights)
    assert plan.weights_gib == pytest.approx(2.108, abs=1e-3)
    assert plan.adapter_gib == pytest.approx(adapter)
    assert plan.activations_gib == pytest.approx(activations)
    assert plan.required_gib == pytest.approx(weights + adapter + activations + 2.3)
    assert plan.available_gib == pytest.approx(0.9 * 16160 / 1024)
    assert plan.dtype == "float16" and plan.reasons  # V100: fp16 with loss scaling
    assert (plan.gpus_per_node, plan.node_count) == (1, 1)


def test_lora_phi3_mini_on_v100_also_fits() -> None:
    plan = estimate_tuning("phi-3-mini-4k-instruct", "Standard_NC6s_v3", "LoRA")
    # 7.12 + 0.046875 + 0.53175 + 2.3 = 9.9986 <= 14.203125
    assert plan.method == "lora"
    assert plan.required_gib == pytest.approx(
        7.12 + 3_145_728 * 16 / GIB + 1024 * 557_568 / GIB + 2.3
    )


def test_qwen32b_lora_does_not_fit_a10_and_says_so() -> None:
    # lora weights alone (61.03 GiB) exceed one A10's 0.9 * 23028 / 1024 = 20.24 GiB.
    with pytest.raises(DoesNotFit) as info:
        estimate_tuning("qwen2.5-coder-32b-instruct", "Standard_NV36ads_A10_v5", "lora")
    assert "20.2 GiB usable" in str(info.value)
    assert "qlora needs about a third" in str(info.value)
    assert info.value.required_gib > 61.03


def test_qwen32b_qlora_fits_a100() -> None:
    # E = 152064 * 5120 * 2 = 1_557_135_360
    weights = ((32.76e9 - 1_557_135_360) * NF4_BITS / 8 + 1_557_135_360 * 2) / GIB
    adapter = 8 * 64 * (2 * 5120 + (40 + 8) * 128) * 16 / GIB
    activations = 1024 * (2 * 5120 * 64 + 34 * 5120 + 8 * 152064) / GIB
    plan = estimate_tuning("qwen2.5-coder-32b-instruct", "Standard_NC24ads_A100_v4", "qlora")
    assert plan.required_gib == pytest.approx(weights + adapter + activations + 2.3)
    assert plan.dtype == "bfloat16" and plan.reasons == []


@pytest.mark.parametrize(
    ("preset", "method"),
    [("falcon-7b-instruct", "lora"), ("llama-3.1-8b-instruct", "qlora"), ("phi-4", "dora")],
)
def test_unsupported_tuning(preset: str, method: str) -> None:
    with pytest.raises(TuningNotSupported, match="does not support"):
        estimate_tuning(preset, "Standard_NC24ads_A100_v4", method)


def test_tuning_needs_volta_or_newer() -> None:
    with pytest.raises(DoesNotFit, match=r"tuning needs compute capability >= 7\.0"):
        estimate_tuning("phi-3-mini-4k-instruct", "Standard_NC6s_v2", "qlora")
