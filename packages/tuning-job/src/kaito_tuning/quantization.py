"""bitsandbytes settings for QLoRA and the dtype actually used on this machine.

`build_bnb_config` is a pure translation of the QuantizationConfig section into
transformers' `BitsAndBytesConfig`, so the qlora path can be checked on machines without a GPU
or bitsandbytes. `resolve_dtype` applies the fallbacks that keep a template usable everywhere:
bfloat16 becomes float16 on GPUs that lack it (the quick start's V100) and float32 on CPU.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kaito_tuning.config import TuningConfig

if TYPE_CHECKING:
    import torch
    from transformers import BitsAndBytesConfig

logger = logging.getLogger(__name__)


def resolve_dtype(requested: str, *, cuda: bool, bf16_supported: bool) -> str:
    """The dtype name to load weights and compute in, given what the device supports."""
    if not cuda:
        # Half precision training on CPU is slow or unsupported for many kernels.
        return "float32"
    if requested in ("auto", "bfloat16") and not bf16_supported:
        return "float16"
    if requested == "auto":
        return "bfloat16"
    return requested


def torch_dtype(name: str) -> torch.dtype:
    """Map a dtype name from the config to the torch dtype."""
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def build_bnb_config(
    cfg: TuningConfig, *, compute_dtype: str | None = None
) -> BitsAndBytesConfig | None:
    """The BitsAndBytesConfig for a qlora run, or None for lora.

    Args:
        cfg: the validated tuning configuration.
        compute_dtype: overrides `bnb_4bit_compute_dtype` (used after `resolve_dtype`).
    """
    quant = cfg.quantization
    if cfg.method != "qlora" or quant is None or not quant.quantizes:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=quant.load_in_4bit,
        load_in_8bit=quant.load_in_8bit,
        bnb_4bit_quant_type=quant.bnb_4bit_quant_type,
        # transformers maps dtype names to torch dtypes itself.
        bnb_4bit_compute_dtype=compute_dtype or quant.bnb_4bit_compute_dtype,
        bnb_4bit_use_double_quant=quant.bnb_4bit_use_double_quant,
        bnb_4bit_quant_storage=quant.bnb_4bit_quant_storage,
        llm_int8_threshold=quant.llm_int8_threshold,
        llm_int8_skip_modules=quant.llm_int8_skip_modules,
        llm_int8_enable_fp32_cpu_offload=quant.llm_int8_enable_fp32_cpu_offload,
        llm_int8_has_fp16_weight=quant.llm_int8_has_fp16_weight,
    )
