"""The LoRA adapter settings, with target modules chosen per model architecture.

`build_lora_config` is pure: it turns the LoraConfig section and the base model's
architecture (`config.model_type`) into a PEFT `LoraConfig`. Configured target modules win;
otherwise a table of known architectures names the attention and MLP projections; anything
else falls back to PEFT's "all-linear". `check_target_modules` reports configured names that
the model does not have, before PEFT fails with a less helpful message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from kaito_tuning.config import TuningConfig
from kaito_tuning.errors import ConfigError

if TYPE_CHECKING:
    from peft import LoraConfig

_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Attention and MLP projections per `config.model_type`. Phi-3 fuses qkv and gate/up.
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "falcon": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
}


def target_modules_for(cfg: TuningConfig, arch: str) -> list[str] | str:
    """Configured target modules, else the architecture's table entry, else 'all-linear'."""
    configured = cfg.lora.target_module_list()
    if configured is not None:
        return configured
    known = TARGET_MODULES.get(arch)
    return list(known) if known else "all-linear"


def build_lora_config(cfg: TuningConfig, arch: str) -> LoraConfig:
    """The PEFT LoraConfig for this run and a base model of architecture `arch`."""
    from peft import LoraConfig

    section = cfg.lora
    return LoraConfig(
        r=section.r,
        lora_alpha=section.lora_alpha,  # type: ignore[arg-type]  # PEFT annotates int, accepts float
        lora_dropout=section.lora_dropout,
        target_modules=target_modules_for(cfg, arch),
        bias=section.bias,
        init_lora_weights=section.init_lora_weights,
        layers_to_transform=section.layers_to_transform,
        layers_pattern=section.layers_pattern,
        modules_to_save=section.modules_to_save,
        use_rslora=section.use_rslora,
        use_dora=section.use_dora,
        task_type=section.task_type,
    )


def check_target_modules(targets: list[str] | str, module_names: Iterable[str]) -> None:
    """Raise ConfigError naming configured target modules that match no module of the model."""
    if isinstance(targets, str):
        return
    full = set(module_names)
    leaves = {name.rsplit(".", 1)[-1] for name in full}
    missing = [t for t in targets if t not in leaves and t not in full]
    if missing:
        sample = ", ".join(sorted(leaves - {""})[:20])
        raise ConfigError(
            f"training_config.LoraConfig.target_modules: {', '.join(missing)} not found in the "
            f"base model; its module names include: {sample}"
        )
