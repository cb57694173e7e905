"""The inference server keys built from a plan carry everything the plan was sized for."""

from __future__ import annotations

import pytest
from kaito_presets.estimator import estimate
from kaito_presets.presets import get_preset
from kaito_presets.server_config import inference_server_config


def test_quickstart_config_is_transformers_on_the_v100() -> None:
    preset = get_preset("phi-3-mini-128k-instruct")
    cfg = inference_server_config(preset, estimate(preset, "Standard_NC6s_v3"))
    # No vLLM keys: the V100 plan is the transformers backend (kaito-inference-cu12).
    assert cfg == {
        "backend": "transformers",
        "served_model_name": "phi-3-mini-128k-instruct",
        "dtype": "float16",
        "max_model_len": 12288,
        "trust_remote_code": False,
        # free for KV = 14.2 - 7.12 - 2.3 = 4.78 GiB; one 12288-token sequence takes 4.5 GiB.
        "max_concurrency": 1,
    }


@pytest.mark.parametrize(
    ("sku", "batch"),
    [
        ("Standard_NC6s_v3", 3),  # 4.78 GiB free / 1.5 GiB per 4096-token sequence
        ("Standard_NC24ads_A100_v4", 8),  # 62.6 GiB free: 41 would fit, capped at 8
    ],
)
def test_transformers_batches_as_many_full_sequences_as_fit(sku: str, batch: int) -> None:
    preset = get_preset("phi-3-mini-4k-instruct")
    cfg = inference_server_config(preset, estimate(preset, sku, runtime="transformers"))
    assert cfg["max_concurrency"] == batch


def test_vllm_config_on_a_t4() -> None:
    preset = get_preset("phi-3-mini-128k-instruct")
    cfg = inference_server_config(preset, estimate(preset, "Standard_NC4as_T4_v3"))
    # free for KV = 13.5 - 2.3 - 7.12 = 4.08 GiB -> 11141 tokens -> 10240. LoRA is left to the
    # server (it switches it on when adapters are mounted): no vllm_engine_args at all.
    assert cfg == {
        "backend": "vllm",
        "served_model_name": "phi-3-mini-128k-instruct",
        "dtype": "float16",
        "max_model_len": 10240,
        "trust_remote_code": False,
        "tensor_parallel_size": 1,
        # The server's own default is 0.84; max_model_len was sized for 0.90.
        "gpu_memory_utilization": 0.9,
    }


def test_pipeline_data_parallel_and_parsers_are_passed() -> None:
    preset = get_preset("phi-3-medium-4k-instruct")
    cfg = inference_server_config(preset, estimate(preset, "Standard_NC64as_T4_v3"))
    assert cfg["vllm_engine_args"] == {"pipeline_parallel_size": 3}
    oss = get_preset("gpt-oss-120b")
    cfg = inference_server_config(oss, estimate(oss, "Standard_NC48ads_A100_v4"))
    # vLLM has no LoRA layers for gpt-oss: switched off whatever is mounted.
    assert cfg["vllm_engine_args"] == {"data_parallel_size": 2, "enable_lora": False}
    assert (cfg["tool_call_parser"], cfg["reasoning_parser"]) == ("openai", "openai_gptoss")
    llama = get_preset("llama-3.1-8b-instruct")
    cfg = inference_server_config(
        llama, estimate(llama, "Standard_NV36ads_A10_v5"), chat_template_dir="/templates"
    )
    assert "vllm_engine_args" not in cfg
    assert cfg["chat_template"] == "/templates/tool_chat_template_llama3.1_json.jinja"


def test_multi_node_plans_get_vllms_multi_node_keys() -> None:
    # Two one-T4 nodes hold llama-3.1-8b: one pipeline stage per node, mp executor, no LoRA.
    llama = get_preset("llama-3.1-8b-instruct")
    plan = estimate(llama, "Standard_NC4as_T4_v3")
    assert plan.node_count == 2
    cfg = inference_server_config(llama, plan)
    assert cfg["tensor_parallel_size"] == 1 and cfg["allow_runtime_lora"] is False
    assert cfg["vllm_engine_args"] == {
        "pipeline_parallel_size": 2,
        "nnodes": 2,
        "distributed_executor_backend": "mp",
        "enable_lora": False,
    }


def test_mistral_formats_and_transformers_keys() -> None:
    mistral = get_preset("mistral-7b-instruct")
    cfg = inference_server_config(mistral, estimate(mistral, "Standard_NC24ads_A100_v4"))
    assert cfg["vllm_engine_args"] == {
        "tokenizer_mode": "mistral",
        "config_format": "mistral",
        "load_format": "mistral",
    }
    assert cfg["tool_call_parser"] == "mistral"
    phi = get_preset("phi-3-mini-4k-instruct")
    cfg = inference_server_config(
        phi, estimate(phi, "Standard_NC24ads_A100_v4", runtime="transformers")
    )
    assert cfg["backend"] == "transformers"
    assert "tensor_parallel_size" not in cfg and "vllm_engine_args" not in cfg
