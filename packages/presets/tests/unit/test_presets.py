"""The model catalog: contents, lookups and the numbers the estimator relies on."""

from __future__ import annotations

import pytest
from kaito_presets.errors import CatalogError, PresetNotFound
from kaito_presets.presets import Preset, PresetDeprecated, _build, all_presets, get_preset

REQUIRED = [
    "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
    "phi-4",
    "phi-4-mini-instruct",
    "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct",
    "mistral-7b",
    "mistral-7b-instruct",
    "qwen2.5-coder-7b-instruct",
    "qwen2.5-coder-32b-instruct",
    "falcon-7b",
    "falcon-40b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-qwen-14b",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "gemma-3-4b-instruct",
    "gemma-3-27b-instruct",
]

# KV bytes per token at 16 bits, from KAITO's generated catalog (reference §3.3, "B/tok").
KAITO_BYTES_PER_TOKEN = {
    "phi-4": 204800,
    "phi-4-mini-instruct": 131072,
    "deepseek-r1-distill-llama-8b": 131072,
    "deepseek-r1-distill-qwen-14b": 196608,
    "phi-3-mini-4k-instruct": 393216,
    "phi-3-mini-128k-instruct": 393216,
    "phi-3-medium-4k-instruct": 204800,
    "phi-3-medium-128k-instruct": 204800,
    "phi-3.5-mini-instruct": 393216,
    "qwen2.5-coder-7b-instruct": 57344,
    "qwen2.5-coder-32b-instruct": 262144,
    "gpt-oss-20b": 49152,
    "gpt-oss-120b": 73728,
    "llama-3.1-8b-instruct": 131072,
    "llama-3.3-70b-instruct": 327680,
    "mistral-7b": 131072,
    "mistral-7b-instruct": 131072,
    "gemma-3-4b-instruct": 139264,
    "gemma-3-27b-instruct": 507904,
}


def test_every_requested_model_is_in_the_catalog() -> None:
    names = {p.name for p in all_presets()}
    assert set(REQUIRED) <= names


@pytest.mark.parametrize(("name", "expected"), sorted(KAITO_BYTES_PER_TOKEN.items()))
def test_kv_geometry_matches_public_configs(name: str, expected: int) -> None:
    assert get_preset(name).kv_cache_bytes_per_token() == expected


@pytest.mark.parametrize("preset", [p for p in all_presets() if not p.quantization], ids=str)
def test_unquantized_weights_are_two_bytes_per_parameter(preset: Preset) -> None:
    # 16-bit checkpoints: size ~ params * 2 bytes (within 5%: tied embeddings, vision towers).
    assert preset.weights_gib == pytest.approx(preset.params_billion * 1e9 * 2 / 2**30, rel=0.05)


@pytest.mark.parametrize(
    "name",
    [
        "phi-3-mini-4k-instruct",
        "PHI-3-MINI-4K-INSTRUCT",
        "microsoft/Phi-3-mini-4k-instruct",
        "microsoft/phi-3-mini-4k-instruct",
        "  phi-3-mini-4k-instruct ",
    ],
)
def test_lookup_by_legacy_name_or_hf_id(name: str) -> None:
    assert get_preset(name).name == "phi-3-mini-4k-instruct"


def test_alias_lookup() -> None:
    assert get_preset("mistral-7b-v0.3").hf_id == "mistralai/Mistral-7B-v0.3"


def test_unknown_preset_suggests() -> None:
    with pytest.raises(PresetNotFound) as info:
        get_preset("phi-3-mini-4k-instuct")
    assert info.value.suggestions[0] == "phi-3-mini-4k-instruct"
    assert "did you mean" in str(info.value)


def test_nothing_close_gives_no_suggestion() -> None:
    with pytest.raises(PresetNotFound) as info:
        get_preset("zzzz")
    assert info.value.suggestions == []
    assert str(info.value) == "unknown preset 'zzzz'"


def test_deprecated_preset_says_so() -> None:
    with pytest.raises(PresetDeprecated, match="deprecated and no longer supported"):
        get_preset("phi-2")


def test_capability_flags() -> None:
    phi = get_preset("phi-3-mini-128k-instruct")
    assert phi.supports_qlora and phi.supports_tuning and phi.supports_lora
    assert not phi.needs_access_token and not phi.supports_tool_calls
    llama = get_preset("llama-3.1-8b-instruct")
    assert llama.needs_access_token and llama.supports_tool_calls
    assert llama.vllm.tool_call_parser == "llama3_json"
    assert not llama.supports_tuning
    assert get_preset("deepseek-r1-distill-qwen-14b").vllm.reasoning_parser == "deepseek_r1"
    oss = get_preset("gpt-oss-120b")
    assert (oss.vllm.tool_call_parser, oss.vllm.reasoning_parser) == ("openai", "openai_gptoss")
    assert oss.runtimes == ("vllm",)
    assert get_preset("falcon-7b").supports_lora is False
    assert get_preset("gemma-3-4b-instruct").fp16_safe is False
    # KAITO's tuning entry for mistral points at a name that does not resolve (§2.13.4).
    assert get_preset("mistral-7b").tuning_methods == ("lora", "qlora")


def test_max_model_len_defaults_to_context_and_respects_cap() -> None:
    base = get_preset("phi-3-mini-128k-instruct")
    assert base.max_model_len == 131072
    capped = base.model_copy(update={"vllm": base.vllm.model_copy(update={"max_model_len": 8192})})
    assert capped.max_model_len == 8192


def _raw(**changes: object) -> dict[str, object]:
    raw = get_preset("phi-3-mini-4k-instruct").model_dump()
    raw.update(changes)
    return raw


def test_catalog_rejects_duplicate_names() -> None:
    with pytest.raises(CatalogError, match="used twice"):
        _build({"presets": [_raw(), _raw(name="other")]})


def test_catalog_rejects_bad_geometry() -> None:
    with pytest.raises(CatalogError, match="not a multiple"):
        _build({"presets": [_raw(num_kv_heads=5)]})


def test_catalog_rejects_tool_calls_without_parser() -> None:
    with pytest.raises(CatalogError, match="tool_call_parser"):
        _build({"presets": [_raw(supports_tool_calls=True)]})


def test_catalog_rejects_unknown_keys() -> None:
    with pytest.raises(CatalogError, match="extra"):
        _build({"presets": [_raw(gpu_count=1)]})
