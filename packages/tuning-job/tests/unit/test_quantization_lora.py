"""The pure translators: BitsAndBytesConfig for qlora, LoraConfig per architecture, dtypes."""

from __future__ import annotations

import pytest
import torch
from kaito_tuning.config import build_config
from kaito_tuning.errors import ConfigError
from kaito_tuning.lora import (
    TARGET_MODULES,
    build_lora_config,
    check_target_modules,
    target_modules_for,
)
from kaito_tuning.quantization import build_bnb_config, resolve_dtype


def test_qlora_builds_4bit_nf4_double_quant() -> None:
    bnb = build_bnb_config(build_config({}, {"method": "qlora"}))
    assert bnb is not None
    assert bnb.load_in_4bit is True
    assert bnb.load_in_8bit is False
    assert bnb.bnb_4bit_quant_type == "nf4"
    assert bnb.bnb_4bit_use_double_quant is True
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb.bnb_4bit_quant_storage == torch.uint8


def test_qlora_compute_dtype_follows_the_device_fallback() -> None:
    bnb = build_bnb_config(build_config({}, {"method": "qlora"}), compute_dtype="float16")
    assert bnb is not None
    assert bnb.bnb_4bit_compute_dtype == torch.float16


def test_qlora_8bit_from_the_file() -> None:
    cfg = build_config({"QuantizationConfig": {"load_in_8bit": True, "llm_int8_threshold": 5.0}})
    bnb = build_bnb_config(cfg)
    assert cfg.method == "qlora"
    assert bnb is not None
    assert bnb.load_in_8bit is True
    assert bnb.llm_int8_threshold == 5.0


def test_lora_has_no_quantization() -> None:
    assert build_bnb_config(build_config({"QuantizationConfig": {"load_in_4bit": False}})) is None
    assert build_bnb_config(build_config({})) is None


@pytest.mark.parametrize(
    ("requested", "cuda", "bf16", "expected"),
    [
        ("bfloat16", False, False, "float32"),
        ("float16", False, False, "float32"),
        ("bfloat16", True, True, "bfloat16"),
        ("bfloat16", True, False, "float16"),  # V100 in the quick start
        ("auto", True, True, "bfloat16"),
        ("auto", True, False, "float16"),
        ("float32", True, True, "float32"),
        ("float16", True, True, "float16"),
    ],
)
def test_resolve_dtype(requested: str, cuda: bool, bf16: bool, expected: str) -> None:
    assert resolve_dtype(requested, cuda=cuda, bf16_supported=bf16) == expected


def test_targets_per_architecture() -> None:
    cfg = build_config({})
    assert target_modules_for(cfg, "phi3") == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert target_modules_for(cfg, "llama") == list(TARGET_MODULES["llama"])
    assert target_modules_for(cfg, "some-new-arch") == "all-linear"


def test_configured_targets_win_over_the_table() -> None:
    cfg = build_config({"LoraConfig": {"target_modules": ["o_proj"]}})
    assert target_modules_for(cfg, "phi3") == ["o_proj"]


def test_build_lora_config_carries_the_section() -> None:
    cfg = build_config(
        {"LoraConfig": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "use_rslora": True}}
    )
    lora = build_lora_config(cfg, "phi3")
    assert lora.r == 16
    assert lora.lora_alpha == 32
    assert lora.lora_dropout == 0.05
    assert lora.use_rslora is True
    assert set(lora.target_modules) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert lora.task_type == "CAUSAL_LM"


def test_unknown_target_modules_are_named() -> None:
    names = ["model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.down_proj", "lm_head"]
    check_target_modules(["qkv_proj", "down_proj"], names)
    check_target_modules("all-linear", names)
    with pytest.raises(ConfigError) as info:
        check_target_modules(["q_proj", "down_proj"], iter(names))
    assert "LoraConfig.target_modules: q_proj not found" in str(info.value)
    assert "qkv_proj" in str(info.value)  # lists what the model does have
