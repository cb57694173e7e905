"""Tuning memory, worked by hand from the catalog numbers (see tuning_estimate's docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kaito_presets
import pytest
import yaml
from kaito_presets.errors import DoesNotFit
from kaito_presets.estimator import estimate_tuning
from kaito_presets.images import get_image
from kaito_presets.tuning_estimate import TuningNotSupported

from .restated import IMAGES, image_with_kernels

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
    assert plan.dtype == "float16"  # V100: fp16 with loss scaling
    assert (plan.gpus_per_node, plan.node_count) == (1, 1)
    # The CUDA 13 tuning image has no sm_70; the CUDA 12 one has it in torch and bitsandbytes.
    assert plan.image == "kaito-tuning-cu12"
    kernels = get_image(plan.image).build.kernels
    assert "sm_70" in kernels["torch"]
    assert "sm_70" in kernels["bitsandbytes/libbitsandbytes_cuda128.so"]
    assert plan.reasons == [
        "kaito-tuning (CUDA 13.0; bitsandbytes 0.50.2, torch 2.13.0+cu130) has no kernels for V100 "
        "(compute capability 7.0, sm_70): torch is built for sm_75 sm_80 sm_86 sm_90 sm_100 "
        "sm_120; tuning with kaito-tuning-cu12 (CUDA 12.8; bitsandbytes 0.50.2, "
        "torch 2.10.0+cu128)",
        "V100 (compute capability 7.0) has no bfloat16 support; training in float16 with loss "
        "scaling",
    ]


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
    assert plan.image == "kaito-tuning"


@pytest.mark.parametrize(
    ("preset", "method"),
    [("falcon-7b-instruct", "lora"), ("llama-3.1-8b-instruct", "qlora"), ("phi-4", "dora")],
)
def test_unsupported_tuning(preset: str, method: str) -> None:
    with pytest.raises(TuningNotSupported, match="does not support"):
        estimate_tuning(preset, "Standard_NC24ads_A100_v4", method)


def test_tuning_on_a_gpu_no_tuning_image_supports_names_the_missing_kernels() -> None:
    with pytest.raises(DoesNotFit) as info:
        estimate_tuning("phi-3-mini-4k-instruct", "Standard_NC6s_v2", "qlora")
    msg = str(info.value)
    assert msg.startswith("qlora tuning cannot run on Standard_NC6s_v2: kaito-tuning (CUDA 13.0")
    assert (
        "kaito-tuning-cu12 (CUDA 12.8; bitsandbytes 0.50.2, torch 2.10.0+cu128) has no "
        "kernels for P100 (compute capability 6.0, sm_60)" in msg
    )


# ---- every tunable preset x every SKU x method, against the formula restated from raw YAML ----
_CAT = Path(kaito_presets.__file__).parent / "catalog"
_MODELS = yaml.safe_load((_CAT / "models.yaml").read_text())["presets"]
_SKU_DATA = yaml.safe_load((_CAT / "skus.yaml").read_text())
_SKUS = [{**_SKU_DATA["gpus"][s["gpu"]], **s} for s in _SKU_DATA["skus"]]
_CASES = [
    (m["name"], s["name"], method) for m in _MODELS for method in m["tuning_methods"] for s in _SKUS
]


def _expected_need(m: dict[str, Any], method: str) -> float:
    h, layers, vocab = m["hidden_size"], m["num_layers"], m["vocab_size"]
    if method == "lora":
        weights = m["weights_gib"]
    else:
        emb = vocab * h * (1 if m.get("tie_word_embeddings") else 2)
        weights = ((m["params_billion"] * 1e9 - emb) * NF4_BITS / 8 + emb * 2) / GIB
    trainable = (
        8 * layers * (2 * h + (m["num_attention_heads"] + m["num_kv_heads"]) * m["head_dim"])
    )
    activations = 1024 * (2 * h * layers + 34 * h + 8 * vocab)
    return weights + trainable * 16 / GIB + activations / GIB + 2.3


@pytest.mark.parametrize(("preset", "sku", "method"), _CASES)
def test_tuning_matrix(preset: str, sku: str, method: str) -> None:
    m = next(x for x in _MODELS if x["name"] == preset)
    s = next(x for x in _SKUS if x["name"] == sku)
    assert m.get("fp16_safe", True)  # the formula above assumes it for GPUs without bf16
    need = _expected_need(m, method)
    budget = 0.9 * s["memory_mib"] / 1024
    major, minor = (int(x) for x in s["compute_capability"].split("."))
    # Images whose measured kernels (all of them: both tuning images list torch and
    # bitsandbytes) cover the GPU; lora needs only torch, which every image that has
    # bitsandbytes for a GPU also has, so one rule serves both methods here.
    names = [i["name"] for i in IMAGES if method in i.get("methods", [])]
    image = image_with_kernels(names, (major, minor))
    if image is None or need > budget:
        with pytest.raises(DoesNotFit):
            estimate_tuning(preset, sku, method)
        return
    plan = estimate_tuning(preset, sku, method)
    assert plan.image == image
    assert plan.required_gib == pytest.approx(need)
    assert plan.dtype == ("bfloat16" if s["bf16"] else "float16")
    assert plan.gpus_per_node == s["gpu_count"]
