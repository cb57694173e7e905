"""Turn a preset and its :class:`GpuPlan` into the inference server's configuration keys.

The estimator sizes ``max_model_len`` for its own ``gpu_memory_utilization`` and may plan
pipeline stages or data-parallel replicas; the server has to get all of them, or vLLM refuses
to start (KV cache smaller than max_model_len) or runs out of memory (a pipeline collapsed onto
one GPU). Building the keys here keeps that coupling in the package that owns the numbers.
Keys are those of ``kaito_inference.config.ServerConfig``, generated into
:mod:`kaito_presets.server_config_keys` (a key the server does not have is a bug here); vLLM
engine arguments the server has no key for go under ``vllm_engine_args``. LoRA is left to
the server (on when adapters are mounted, sized from them) except for presets vLLM has no LoRA
layers for, which get ``enable_lora: false``. A multi-node plan (``kaito_presets.serving``)
adds vLLM's multi-node keys: ``nnodes`` and the multiprocessing executor (``mp``; no Ray), LoRA
off (the headless workers are not sized for adapters); the controller adds where the leader is
(``master_addr``, ``master_port``, ``node_rank: 0``), which only it knows. For the transformers
backend, which decodes concurrent requests in
one batch whose KV cache grows with every sequence, ``max_concurrency`` is as many full-length
sequences as the memory left after the weights holds (at most ``TRANSFORMERS_MAX_BATCH``).
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Any

from kaito_presets.estimator import GpuPlan
from kaito_presets.presets import Preset
from kaito_presets.server_config_keys import SERVER_CONFIG_KEYS

__all__ = ["TRANSFORMERS_MAX_BATCH", "inference_server_config", "transformers_batch_size"]

# Beyond this the tiny per-step gain on CPUs and small GPUs no longer pays for the latency.
TRANSFORMERS_MAX_BATCH = 8


def transformers_batch_size(plan: GpuPlan) -> int:
    """Requests the transformers backend may decode together on ``plan``'s GPU: full-length
    (``max_model_len``) sequences whose KV cache fits beside the weights, 1 to 8."""
    per_sequence = plan.kv_cache_gib * plan.max_model_len / max(plan.context_length, 1)
    free = plan.available_gib - plan.weights_gib - plan.overhead_gib
    if per_sequence <= 0:
        return TRANSFORMERS_MAX_BATCH
    return max(1, min(TRANSFORMERS_MAX_BATCH, math.floor(free / per_sequence)))


def inference_server_config(
    preset: Preset, plan: GpuPlan, *, chat_template_dir: str | None = None
) -> dict[str, Any]:
    """Server configuration for serving ``preset`` as planned.

    Args:
        preset: The preset being served.
        plan: Its plan from :func:`kaito_presets.estimator.estimate`.
        chat_template_dir: Directory in the image holding the preset's chat template file; the
            template is left out when None (the model's own template is then used).
    """
    cfg: dict[str, Any] = {
        "backend": plan.runtime,
        "served_model_name": preset.name,
        "dtype": plan.dtype,
        "max_model_len": plan.max_model_len,
        "trust_remote_code": preset.trust_remote_code,
    }
    if preset.vllm.tool_call_parser:
        cfg["tool_call_parser"] = preset.vllm.tool_call_parser
    if preset.vllm.reasoning_parser:
        cfg["reasoning_parser"] = preset.vllm.reasoning_parser
    if preset.vllm.chat_template and chat_template_dir:
        cfg["chat_template"] = str(PurePosixPath(chat_template_dir) / preset.vllm.chat_template)
    if plan.runtime == "transformers":
        cfg["max_concurrency"] = transformers_batch_size(plan)
    if plan.runtime != "vllm":
        return _checked(cfg)
    cfg["tensor_parallel_size"] = plan.tensor_parallel_size
    cfg["gpu_memory_utilization"] = plan.gpu_memory_utilization
    engine: dict[str, Any] = {}
    if plan.pipeline_parallel_size > 1:
        engine["pipeline_parallel_size"] = plan.pipeline_parallel_size
    if plan.data_parallel_size > 1:
        engine["data_parallel_size"] = plan.data_parallel_size
    if plan.node_count > 1:
        engine["nnodes"] = plan.node_count
        engine["distributed_executor_backend"] = "mp"
        engine["enable_lora"] = False
        cfg["allow_runtime_lora"] = False
    if not preset.supports_lora:
        engine["enable_lora"] = False
    for key in ("tokenizer_mode", "config_format", "load_format"):
        value = getattr(preset.vllm, key)
        if value:
            engine[key] = value
    if engine:
        cfg["vllm_engine_args"] = engine
    return _checked(cfg)


def _checked(cfg: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg) - SERVER_CONFIG_KEYS)
    if unknown:
        raise ValueError(f"keys the inference server does not have: {', '.join(unknown)}")
    return cfg
