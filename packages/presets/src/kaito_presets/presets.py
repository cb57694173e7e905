"""The model preset catalog: what each named model is and what it needs.

``catalog/models.yaml`` is the data; :class:`Preset` is its typed form with **capability flags**
(runtimes, tuning methods, LoRA, tool calls, access token) so callers ask the preset instead of
matching names. Lookup accepts the preset name, KAITO's legacy short names, extra aliases and
the Hugging Face id, all case-insensitively, and an unknown name gets a "did you mean".
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kaito_presets._data import load_catalog_yaml
from kaito_presets.errors import CatalogError, PresetNotFound
from kaito_presets.skus import parse_compute_capability

__all__ = [
    "RUNTIMES",
    "TUNING_METHODS",
    "Dtype",
    "Preset",
    "PresetDeprecated",
    "Runtime",
    "TuningMethod",
    "VllmArgs",
    "all_presets",
    "dtype_bytes",
    "find_preset",
    "get_preset",
]

Runtime = Literal["vllm", "transformers"]
TuningMethod = Literal["lora", "qlora"]
Dtype = Literal["bfloat16", "float16", "float32"]
RUNTIMES: tuple[Runtime, ...] = ("vllm", "transformers")
TUNING_METHODS: tuple[TuningMethod, ...] = ("lora", "qlora")
_DTYPE_BYTES: dict[str, int] = {"bfloat16": 2, "float16": 2, "float32": 4}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a torch dtype name (bfloat16/float16: 2, float32: 4)."""
    return _DTYPE_BYTES[dtype]


class PresetDeprecated(PresetNotFound):
    """The name was a preset once and has been removed."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name)
        self.args = (f"preset {name!r} is deprecated and no longer supported: {message}",)


class VllmArgs(BaseModel):
    """Per-model vLLM arguments (the inference server turns them into CLI flags)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = Field(
        default=None, description="File name of a chat template shipped with the inference image."
    )
    tokenizer_mode: str | None = None
    config_format: str | None = None
    load_format: str | None = None
    max_model_len: int | None = Field(
        default=None, gt=0, description="Upper bound for --max-model-len; None = context_length."
    )


class Preset(BaseModel):
    """One model preset from the catalog."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hf_id: str
    aliases: tuple[str, ...] = ()
    family: str
    architecture: str
    params_billion: float = Field(gt=0)
    weights_gib: float = Field(gt=0, description="Size of the loaded weight files, GiB.")
    dtype: Dtype = Field(description="Checkpoint dtype.")
    quantization: str | None = None
    context_length: int = Field(gt=0, description="max_position_embeddings.")
    num_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    kv_lora_rank: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Multi-head latent attention (DeepSeek-V3 style): the KV cache holds one compressed "
            "latent of kv_lora_rank + qk_rope_head_dim values per token and layer, which every "
            "tensor-parallel rank keeps whole."
        ),
    )
    qk_rope_head_dim: int | None = Field(default=None, ge=0)
    hidden_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool = False
    fp16_safe: bool = True
    min_compute_capability: str | None = None
    runtimes: tuple[Runtime, ...] = Field(min_length=1)
    tuning_methods: tuple[TuningMethod, ...] = ()
    supports_lora: bool = False
    supports_tool_calls: bool = False
    needs_access_token: bool = False
    license: str | None = Field(
        default=None, description="The model card's licence (Hugging Face licence id)."
    )
    trust_remote_code: bool = False
    config_checked: str | None = Field(
        default=None,
        description=(
            "Which geometry fields (vocab_size, hidden_size, num_layers, num_kv_heads, head_dim, "
            "MLA ranks) were checked against a published config.json or model card, and where; "
            "None: not checked beyond the catalog's own source."
        ),
    )
    vllm: VllmArgs = VllmArgs()

    @model_validator(mode="after")
    def _check(self) -> Preset:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"{self.name}: {self.num_attention_heads} attention heads are not a multiple of "
                f"{self.num_kv_heads} KV heads"
            )
        if self.supports_tool_calls != (self.vllm.tool_call_parser is not None):
            raise ValueError(f"{self.name}: supports_tool_calls needs a vllm.tool_call_parser")
        if self.min_compute_capability is not None:
            parse_compute_capability(self.min_compute_capability)
        if (self.kv_lora_rank is None) != (self.qk_rope_head_dim is None):
            raise ValueError(f"{self.name}: kv_lora_rank and qk_rope_head_dim come together")
        return self

    @property
    def supports_qlora(self) -> bool:
        """QLoRA fine-tuning is supported."""
        return "qlora" in self.tuning_methods

    @property
    def supports_tuning(self) -> bool:
        """Some fine-tuning method is supported."""
        return bool(self.tuning_methods)

    @property
    def weight_bytes(self) -> int:
        """Loaded weight files in bytes."""
        return round(self.weights_gib * 2**30)

    @property
    def max_model_len(self) -> int:
        """Longest context the preset may be served with."""
        cap = self.vllm.max_model_len
        return min(cap, self.context_length) if cap else self.context_length

    def kv_cache_bytes_per_token(self, element_bytes: int = 2) -> int:
        """KV cache bytes per token on one GPU holding the whole model: 2 (K, V) x layers x
        KV heads x head_dim x bytes per element; with latent attention, layers x
        (kv_lora_rank + qk_rope_head_dim) x bytes per element."""
        if self.kv_lora_rank is not None:
            latent = self.kv_lora_rank + (self.qk_rope_head_dim or 0)
            return self.num_layers * latent * element_bytes
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * element_bytes

    def names(self) -> tuple[str, ...]:
        """Every name this preset answers to."""
        return (self.name, self.hf_id, *self.aliases)


class _Registry:
    def __init__(self, presets: list[Preset], deprecated: dict[str, str]) -> None:
        self.presets = presets
        self.deprecated = {k.lower(): v for k, v in deprecated.items()}
        self.by_name: dict[str, Preset] = {}
        for preset in presets:
            for name in preset.names():
                key = name.lower()
                if key in self.by_name:
                    raise CatalogError(f"models.yaml: name {name!r} is used twice")
                self.by_name[key] = preset


def _build(data: dict[str, Any]) -> _Registry:
    presets: list[Preset] = []
    for raw in data.get("presets") or []:
        try:
            presets.append(Preset.model_validate(raw))
        except ValidationError as err:
            raise CatalogError(f"models.yaml: bad preset {raw.get('name')!r}: {err}") from err
    return _Registry(presets, data.get("deprecated") or {})


@cache
def _registry() -> _Registry:
    return _build(load_catalog_yaml("models.yaml"))


def all_presets() -> list[Preset]:
    """Every preset in the catalog, in catalog order."""
    return list(_registry().presets)


def find_preset(name: str) -> Preset | None:
    """The preset answering to ``name`` (name, alias or HF id, case-insensitive), or ``None``."""
    return _registry().by_name.get(name.strip().lower())


def get_preset(name: str) -> Preset:
    """The preset answering to ``name``.

    Raises:
        PresetDeprecated: the name was removed from the catalog.
        PresetNotFound: no such preset; ``suggestions`` holds close names.
    """
    registry = _registry()
    preset = find_preset(name)
    if preset is not None:
        return preset
    key = name.strip().lower()
    if key in registry.deprecated:
        raise PresetDeprecated(name, registry.deprecated[key])
    canonical = {n.lower(): n for p in registry.presets for n in (p.name, p.hf_id)}
    close = difflib.get_close_matches(key, list(canonical), n=3, cutoff=0.6)
    raise PresetNotFound(name, [canonical[c] for c in close])
