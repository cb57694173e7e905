"""Hand-worked estimator cases: each expectation is computed here from literal catalog numbers.

Shared numbers: u = 0.90, O = 2.3 GiB, GiB = 2^30 bytes.
V100 16 GB reports 16160 MiB -> M = 15.78125 GiB, B = 14.203125 GiB.
T4 reports 15360 MiB -> M = 15.0, B = 13.5. A100 80 GB reports 81920 MiB -> M = 80, B = 72.
Images (catalog/images.measured.yaml): kaito-inference (vLLM, CUDA 13) has kernels from sm_75,
kaito-inference-cu12 (transformers, CUDA 12.8) from sm_70; neither has sm_60 or sm_37.
"""

from __future__ import annotations

import pytest
from kaito_presets.errors import DoesNotFit, PresetNotFound, SkuNotFound
from kaito_presets.estimator import cheapest_fitting_sku, estimate, fitting_plans
from kaito_presets.images import get_image

GIB = 2**30
V100_B = 0.9 * 16160 / 1024  # 14.203125
T4_B = 0.9 * 15360 / 1024  # 13.5
A100_B = 0.9 * 81920 / 1024  # 72.0


@pytest.mark.parametrize(
    ("preset", "max_model_len"),
    [
        # free for KV = 14.203125 - 2.3 - 7.12 = 4.783125 GiB; one token = 2*32*96*32*2 = 393216 B
        # -> floor(4.783125 * 2^30 / 393216) = 13061 tokens -> 12288 (multiple of 1024),
        # capped at the model's 4096 for the 4k model.
        ("phi-3-mini-4k-instruct", 4096),
        ("phi-3-mini-128k-instruct", 12288),
    ],
)
def test_quickstart_phi3_mini_on_nc6s_v3_is_fp16_transformers_on_cuda12(
    preset: str, max_model_len: int
) -> None:
    plan = estimate(preset, "Standard_NC6s_v3")
    # The vLLM image is a CUDA 13 build without sm_70; the CUDA 12 image has it.
    assert (plan.runtime, plan.image) == ("transformers", "kaito-inference-cu12")
    assert "sm_70" in get_image(plan.image).build.kernels["torch"]
    assert "sm_70" not in get_image("kaito-inference").build.kernels["torch"]
    assert plan.reasons[0].startswith("vLLM: kaito-inference (CUDA 13.0; torch 2.13.0")
    assert "has no kernels for V100 (compute capability 7.0, sm_70)" in plan.reasons[0]
    assert plan.reasons[0].endswith("; using transformers (kaito-inference-cu12)")
    assert plan.dtype == "float16"  # V100 has no bf16
    assert (plan.node_count, plan.gpus_per_node) == (1, 1)
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (1, 1)
    assert plan.max_model_len == max_model_len
    assert plan.context_length == 4096
    # weights 7.12 + overhead 2.3 + KV 4096 * 393216 B = 1.5 GiB
    assert plan.kv_cache_gib == pytest.approx(4096 * 393216 / GIB) == pytest.approx(1.5)
    assert plan.required_gib == pytest.approx(7.12 + 2.3 + 1.5)
    assert plan.available_gib == pytest.approx(V100_B)
    assert plan.gpu_memory_utilization == 0.9
    assert any("no bfloat16" in r and "float16" in r for r in plan.reasons)
    assert (4.783125 * GIB) // 393216 == 13061


def test_llama_70b_fits_one_nc48ads_a100_node_where_kaito_says_two() -> None:
    # t = 2: weights 131.42 / 2 = 65.71; KV/token = 2 * (8/2) * 128 * 80 * 2 = 163840 B,
    # 4096 tokens = 0.625 GiB; 65.71 + 2.3 + 0.625 = 68.635 <= 72.
    # KAITO: budget ~61.5/GPU, floor(134 / 61.5) + 1 = 3 GPUs -> 2 nodes.
    plan = estimate("llama-3.3-70b-instruct", "Standard_NC48ads_A100_v4")
    assert (plan.node_count, plan.gpus_per_node, plan.tensor_parallel_size) == (1, 2, 2)
    assert plan.required_gib == pytest.approx(65.71 + 2.3 + 0.625)
    # free = 72 - 2.3 - 65.71 = 3.99 GiB -> floor(3.99 * 2^30 / 163840) = 26148 -> 25600
    assert plan.max_model_len == 25600
    assert plan.dtype == "bfloat16" and plan.reasons == []


def test_gpt_oss_120b_fits_one_a100_where_kaito_counts_twice_the_weights() -> None:
    # Weights loaded: 60.77 GiB (KAITO's catalog says 121.54, counting original/ as well, and
    # upstream #2302 reports two NC48ads_A100_v4 nodes). t = 1: 60.77 + 2.3 + 4096 * 73728 B
    # (0.28125 GiB) = 63.35125 <= 72; the second GPU is a data-parallel replica.
    plan = estimate("gpt-oss-120b", "Standard_NC48ads_A100_v4")
    assert (plan.node_count, plan.tensor_parallel_size, plan.data_parallel_size) == (1, 1, 2)
    assert plan.gpus_per_node == 2
    assert plan.required_gib == pytest.approx(63.35125)


def test_falcon_7b_cannot_use_tensor_parallel_so_pipelines_over_two_t4() -> None:
    # 71 heads: only t = 1 divides them. One T4: 13.44 + 2.3 > 13.5. Two stages (p = 2):
    # tied embedding e = 65024 * 4544 * 2 B = 0.55035 GiB sits whole on each end stage:
    # (13.44 - 0.55035) / 2 + 0.55035 = 6.99518; KV/token = 2 * 1 * 64 * 16 * 2 = 4096 B,
    # context min(2048, 4096) = 2048 -> 0.0078125 GiB; need 6.99518 + 2.3 + 0.0078125 = 9.30299.
    emb = 65024 * 4544 * 2 / GIB
    plan = estimate("falcon-7b", "Standard_NC64as_T4_v3")
    assert (plan.runtime, plan.image) == ("vllm", "kaito-inference")
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (1, 2)
    assert (plan.node_count, plan.gpus_per_node) == (1, 2)
    assert plan.weights_gib == pytest.approx((13.44 - emb) / 2 + emb)
    assert plan.required_gib == pytest.approx(9.30299, abs=1e-5)
    assert plan.max_model_len == 2048


def test_phi3_medium_on_four_t4_skips_invalid_tp4() -> None:
    # 10 KV heads: t = 4 is invalid (10 % 4 and 4 % 10 are both non-zero). t = 2 or p = 2:
    # about 26 / 2 + 2.3 = 15.3 > 13.5. t = 1, p = 3: untied embeddings e = 32064 * 5120 * 2 B
    # = 0.305771 GiB each; (26 - 2e) / 3 + e = 8.768590; KV/token = 2 * 10 * 128 * ceil(40/3)
    # * 2 = 71680 B, * 4096 = 0.2734375 GiB -> 11.342028 <= 13.5.
    emb = 32064 * 5120 * 2 / GIB
    plan = estimate("phi-3-medium-4k-instruct", "Standard_NC64as_T4_v3")
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (1, 3)
    assert (plan.node_count, plan.gpus_per_node) == (1, 3)
    assert plan.required_gib == pytest.approx((26 - 2 * emb) / 3 + emb + 2.3 + 4096 * 71680 / GIB)
    assert plan.required_gib == pytest.approx(11.342028, abs=1e-5)
    assert plan.dtype == "float16"


def test_gemma3_on_t4_uses_float32_and_data_parallel() -> None:
    # Gemma 3 is unstable in fp16 and T4 has no bf16 -> float32: weights 8.01 * 2 = 16.02.
    # t = 1: 16.02 + 2.3 + 4096 * 278528 B (1.0625) > 13.5. t = 2: 8.01 + 2.3 + 4096 *
    # (2 * 2 * 256 * 34 * 4 = 139264 B) = 0.53125 -> 10.84125. 4 GPUs / t 2 = 2 data-parallel
    # replicas. free = 13.5 - 2.3 - 8.01 = 3.19 GiB -> floor(3.19 * 2^30 / 139264) = 24595 -> 24576.
    plan = estimate("gemma-3-4b-instruct", "Standard_NC64as_T4_v3")
    assert plan.dtype == "float32"
    assert (plan.tensor_parallel_size, plan.data_parallel_size, plan.gpus_per_node) == (2, 2, 4)
    assert plan.required_gib == pytest.approx(10.84125)
    assert plan.max_model_len == 24576
    assert any("float32" in r and "float16" in r for r in plan.reasons)


def test_p100_has_no_image_and_the_refusal_names_the_missing_kernels() -> None:
    # P100 is sm_60: the CUDA 12.8 torch starts at sm_70, the CUDA 13 one at sm_75. Memory is
    # not the problem (7.12 + 2.3 + 1.5 = 10.92 <= 14.31), so the message does not talk about it.
    with pytest.raises(DoesNotFit) as info:
        estimate("phi-3-mini-4k-instruct", "Standard_NC6s_v2")
    msg = str(info.value)
    assert msg.startswith(
        "phi-3-mini-4k-instruct cannot run on Standard_NC6s_v2 (1 x P100, compute capability 6.0): "
    )
    assert "vLLM: kaito-inference (CUDA 13.0; " in msg
    assert (
        "transformers: kaito-inference-cu12 (CUDA 12.8; torch 2.10.0+cu128) has no kernels "
        "for P100 (compute capability 6.0, sm_60): torch is built for sm_70 sm_75" in msg
    )
    assert "GiB" not in msg


def test_k80_runs_nothing_and_suggests_skus() -> None:
    with pytest.raises(DoesNotFit) as info:
        estimate("phi-3-mini-4k-instruct", "Standard_NC6")
    err = info.value
    assert "has no kernels for K80 (compute capability 3.7, sm_37)" in str(err)
    assert len(err.reasons) == 2  # one per runtime
    # Cheapest orderable Azure SKUs that fit, cheapest first: T4 sizes at 0.526 and 0.752 $/h.
    assert err.suggestions[:2] == ["Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"]
    assert err.required_gib == pytest.approx(10.92)


def test_does_not_fit_message_states_needed_and_available_memory() -> None:
    # 1 x A10 (23028 MiB): B = 0.9 * 22.48828125 = 20.239453125; llama-70b needs 131.42 + 2.3 +
    # 4096 * 327680 B (1.25 GiB) = 134.97 GiB on one GPU; 8 nodes of 1 A10 hold 8 * (20.24 - 2.3)
    # = 143.5 GiB for weights but KV and overhead per GPU push it past: check it is refused.
    with pytest.raises(DoesNotFit) as info:
        estimate("llama-3.3-70b-instruct", "Standard_NV36ads_A10_v5", max_nodes=2)
    msg = str(info.value)
    assert "needs 135.0 GiB" in msg
    assert "1 x 22.5 GiB A10 (20.2 GiB usable per GPU at 90%)" in msg
    assert "instance types that fit: Standard_NC48ads_A100_v4" in msg
    assert info.value.available_gib == pytest.approx(20.239453125)


def test_gpt_oss_needs_ampere_for_mxfp4() -> None:
    with pytest.raises(DoesNotFit) as info:
        estimate("gpt-oss-20b", "Standard_NC4as_T4_v3")
    assert "gpt-oss-20b (mxfp4) needs compute capability >= 8.0, T4 has 7.5" in str(info.value)
    assert "does not support the transformers runtime" in str(info.value)
    # 12.82 + 2.3 + 4096 * 49152 B (0.1875 GiB) = 15.3075 <= 20.24 on one A10.
    plan = estimate("gpt-oss-20b", "Standard_NV36ads_A10_v5")
    assert plan.required_gib == pytest.approx(15.3075)


def test_explicit_context_is_the_max_model_len_and_may_need_more_nodes() -> None:
    # 32768 tokens on one T4: 7.12 + 2.3 + 32768 * 393216 B (12 GiB) = 21.42 > 13.5.
    # Two NC4as_T4_v3 nodes, p = 2: untied embeddings e each, (7.12 - 2e) / 2 + e = 3.56,
    # + 2.3 + 32768 * 196608 B (6 GiB) = 11.86.
    plan = estimate("phi-3-mini-128k-instruct", "Standard_NC4as_T4_v3", context_length=32768)
    assert (plan.node_count, plan.pipeline_parallel_size, plan.gpus_per_node) == (2, 2, 1)
    assert plan.max_model_len == 32768
    assert plan.required_gib == pytest.approx(11.86)


def test_context_beyond_model_limit_is_refused() -> None:
    with pytest.raises(DoesNotFit, match="exceeds phi-3-mini-4k-instruct's limit of 4096"):
        estimate("phi-3-mini-4k-instruct", "Standard_NC24ads_A100_v4", context_length=8192)
    with pytest.raises(ValueError, match="must be positive"):
        estimate("phi-3-mini-4k-instruct", "Standard_NC24ads_A100_v4", context_length=0)
    with pytest.raises(ValueError, match="max_nodes must be at least 1"):
        estimate("phi-3-mini-4k-instruct", "Standard_NC24ads_A100_v4", max_nodes=0)


def test_max_nodes_limits_pipelines() -> None:
    # llama-3.1-8b needs two one-T4 nodes (see below); with max_nodes=1 it does not fit.
    with pytest.raises(DoesNotFit, match="vLLM does not fit within one node"):
        estimate("llama-3.1-8b-instruct", "Standard_NC4as_T4_v3", max_nodes=1)


def test_forced_runtime_is_not_switched() -> None:
    plan = estimate("phi-3-mini-4k-instruct", "Standard_NC4as_T4_v3", runtime="transformers")
    assert (plan.runtime, plan.image, plan.reasons) == (
        "transformers",
        "kaito-inference-cu12",
        ["T4 (compute capability 7.5) has no bfloat16 support; serving in float16"],
    )
    with pytest.raises(DoesNotFit, match=r"cannot run on Standard_NC6s_v3 .*vLLM: kaito-inference"):
        estimate("phi-3-mini-4k-instruct", "Standard_NC6s_v3", runtime="vllm")


def test_cheapest_sku() -> None:
    # phi-3-mini fits a T4 (10.92 <= 13.5); NC4as_T4_v3 (0.526 $/h) is the cheapest Azure size.
    assert cheapest_fitting_sku("phi-3-mini-4k-instruct").sku.name == "Standard_NC4as_T4_v3"
    assert cheapest_fitting_sku("phi-3-mini-4k-instruct", cloud="aws").sku.name == "g4dn.xlarge"
    # llama-70b: one NC48ads_A100_v4 (7.346) ties two NC24ads_A100_v4 (2 * 3.673); fewer nodes win.
    best = cheapest_fitting_sku("llama-3.3-70b-instruct")
    assert (best.sku.name, best.node_count) == ("Standard_NC48ads_A100_v4", 1)
    assert "cheapest azure instance type" in best.reasons[-1]
    # estimate(..., None) is the same search.
    assert estimate("llama-3.3-70b-instruct", None).sku.name == "Standard_NC48ads_A100_v4"


def test_fitting_plans_are_sorted_single_node_first_then_price_and_skip_retired() -> None:
    plans = fitting_plans("phi-3-mini-4k-instruct", cloud=None)
    keys = [(p.node_count > 1, p.price_per_hour_usd) for p in plans]
    assert keys == sorted(keys)
    assert not any(p.sku.retired for p in plans)
    assert {p.sku.cloud for p in plans} == {"azure", "aws"}


def test_cheapest_prefers_one_node_over_a_cheaper_pipeline_of_small_vms() -> None:
    # llama-3.1-8b: two NC4as_T4_v3 (2 * 0.526 = 1.052 $/h) hold it as a 2-stage pipeline:
    # untied embeddings, so (14.96 - 2e) / 2 + e = 7.48; + 2.3 + 4096 * (2*8*128*16*2 B) 0.25
    # = 10.03 <= 13.5. One NV36ads_A10_v5 (3.20 $/h): 14.96 + 2.3 + 0.5 = 17.76 <= 20.24.
    # The single node wins although it costs more.
    t4 = estimate("llama-3.1-8b-instruct", "Standard_NC4as_T4_v3")
    assert (t4.node_count, t4.pipeline_parallel_size) == (2, 2)
    assert t4.required_gib == pytest.approx(10.03)
    assert t4.price_per_hour_usd == pytest.approx(1.052)
    best = cheapest_fitting_sku("llama-3.1-8b-instruct")
    assert (best.sku.name, best.node_count) == ("Standard_NV36ads_A10_v5", 1)
    assert best.required_gib == pytest.approx(17.76)


def test_pipeline_stage_with_the_lm_head_is_sized_whole() -> None:
    # qwen2.5-coder-32b on 1-GPU T4 nodes: e = 152064 * 5120 * 2 B = 1.450195 GiB.
    # 6 stages: (61.03 - 2e) / 6 + e + 2.3 + 4096 * (2*8*128*11*2 B) = 13.6104 > 13.5
    # (an even split, 61.03 / 6 + 2.3 + 0.171875 = 12.64, would wrongly accept it);
    # 7 stages: (61.03 - 2e) / 7 + e + 2.3 + 4096 * (2*8*128*10*2 B) = 12.2106 <= 13.5.
    emb = 152064 * 5120 * 2 / GIB
    assert (61.03 - 2 * emb) / 6 + emb + 2.3 + 4096 * 45056 / GIB > T4_B
    t4 = estimate("qwen2.5-coder-32b-instruct", "Standard_NC4as_T4_v3")
    assert (t4.node_count, t4.pipeline_parallel_size) == (7, 7)
    assert t4.required_gib == pytest.approx((61.03 - 2 * emb) / 7 + emb + 2.3 + 4096 * 40960 / GIB)
    # One A100 80 GB holds it alone: 61.03 + 2.3 + 4096 * 262144 B (1 GiB) = 64.33 <= 72.
    plan = cheapest_fitting_sku("qwen2.5-coder-32b-instruct")
    assert (plan.sku.name, plan.node_count) == ("Standard_NC24ads_A100_v4", 1)
    assert plan.required_gib == pytest.approx(64.33)


def test_unknown_names_raise_lookup_errors() -> None:
    with pytest.raises(PresetNotFound):
        estimate("phi-9", "Standard_NC6s_v3")
    with pytest.raises(SkuNotFound):
        estimate("phi-3-mini-4k-instruct", "Standard_XYZ")
