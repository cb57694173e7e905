"""Every catalog preset against every catalog SKU.

The expected plan for each pair is derived in this file from the raw YAML numbers with the
formula of the estimator's docstring, written out independently as a brute-force search over all
(nodes, t, p) layouts (no import of the estimator's helpers or of the pydantic models), and the
runtime image from the raw image catalog with CUDA's compatibility rule restated here. The
hand-worked cases with literal numbers are in ``test_estimator.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import kaito_presets
import pytest
import yaml
from kaito_presets.errors import DoesNotFit
from kaito_presets.estimator import estimate
from kaito_presets.presets import get_preset
from kaito_presets.skus import get_sku

from .restated import IMAGES, KERNELS, code_runs, image_with_kernels

CATALOG = Path(kaito_presets.__file__).parent / "catalog"
MODELS: list[dict[str, Any]] = yaml.safe_load((CATALOG / "models.yaml").read_text())["presets"]
_SKU_DATA = yaml.safe_load((CATALOG / "skus.yaml").read_text())
SKUS: list[dict[str, Any]] = [{**_SKU_DATA["gpus"][raw["gpu"]], **raw} for raw in _SKU_DATA["skus"]]

# The constants of the formula, restated.
UTIL = 0.90
OVERHEAD = 2.3
DEFAULT_CTX = 4096
MAX_NODES = 8


def _cc(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def _serving_images(runtime: str) -> list[str]:
    return [i["name"] for i in IMAGES if runtime in i.get("runtimes", [])]


def _candidates(m: dict[str, Any], n: int, runtime: str) -> list[tuple[int, int, int]]:
    """All (nodes, t, p) layouts the policy allows, as a brute force over every combination."""
    if runtime == "transformers":
        return [(1, 1, g) for g in range(1, n + 1)]
    heads, kv = m["num_attention_heads"], m["num_kv_heads"]
    valid = [
        t for t in range(1, n + 1) if n % t == 0 and heads % t == 0 and (kv % t == 0 or t % kv == 0)
    ]
    out = [(1, t, p) for t in valid for p in range(1, n // t + 1) if p <= m["num_layers"]]
    big = max(valid)
    out += [
        (nodes, big, nodes * (n // big))
        for nodes in range(2, MAX_NODES + 1)
        if nodes * (n // big) <= m["num_layers"]
    ]
    return out


def _expected(m: dict[str, Any], s: dict[str, Any]) -> dict[str, Any] | None:
    cc = _cc(s["compute_capability"])
    budget = UTIL * s["memory_mib"] / 1024
    n = s["gpu_count"]
    for runtime in ("vllm", "transformers"):
        image = image_with_kernels(_serving_images(runtime), cc)
        if runtime not in m["runtimes"] or image is None:
            continue
        if m.get("min_compute_capability") and cc < _cc(m["min_compute_capability"]):
            continue
        if s["bf16"]:
            dtype = "bfloat16"
        elif m.get("fp16_safe", True):
            dtype = "float16"
        else:
            dtype = "float32"
        width = 4 if dtype == "float32" else 2
        weights = m["weights_gib"] * (1 if m.get("quantization") else width / 2)
        limit = (m.get("vllm") or {}).get("max_model_len") or m["context_length"]
        ctx = min(limit, DEFAULT_CTX)
        # One vocab x hidden matrix; the first stage holds the embedding, the last the lm_head.
        emb_width = 2 if m.get("quantization") else width
        emb = m["vocab_size"] * m["hidden_size"] * emb_width / 2**30
        n_emb = 1 if m.get("tie_word_embeddings") else 2
        fitting = []
        for nodes, t, p in _candidates(m, n, runtime):
            w = weights / t if p == 1 else (weights - emb * n_emb) / (t * p) + emb / t
            if m.get("kv_lora_rank"):  # latent attention: one latent per layer, on every rank
                kv_tok = m["kv_lora_rank"] + m["qk_rope_head_dim"]
            else:
                kv_tok = 2 * math.ceil(m["num_kv_heads"] / t) * m["head_dim"]
            kv_tok *= math.ceil(m["num_layers"] / p) * width
            need = w + OVERHEAD + ctx * kv_tok / 2**30
            if need <= budget:
                fitting.append((nodes, t * p, -t, p, kv_tok, w))
        if not fitting:
            continue
        nodes, _total, neg_t, p, kv_tok, w = min(fitting)
        t = -neg_t
        tokens = math.floor((budget - OVERHEAD - w) * 2**30 / kv_tok)
        if runtime == "vllm":
            dp = n // t if nodes == 1 and p == 1 else 1
            gpus = t * p * dp if nodes == 1 else t * (n // t)
            tp, pp = t, p
        else:
            dp, gpus, tp, pp = 1, p, 1, 1
        return {
            "runtime": runtime,
            "image": image,
            "dtype": dtype,
            "node_count": nodes,
            "gpus_per_node": gpus,
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "data_parallel_size": dp,
            "max_model_len": max(ctx, min(limit, tokens // 1024 * 1024)),
        }
    return None


PAIRS = [(m["name"], s["name"]) for m in MODELS for s in SKUS]


def test_matrix_is_the_whole_catalog() -> None:
    assert len(MODELS) >= 23 and len(SKUS) >= 42
    assert len(PAIRS) == len(MODELS) * len(SKUS)


@pytest.mark.parametrize(("preset_name", "sku_name"), PAIRS)
def test_estimate_matches_hand_formula(preset_name: str, sku_name: str) -> None:
    m = next(x for x in MODELS if x["name"] == preset_name)
    s = next(x for x in SKUS if x["name"] == sku_name)
    expected = _expected(m, s)
    if expected is None:
        with pytest.raises(DoesNotFit) as info:
            estimate(get_preset(preset_name), get_sku(sku_name))
        assert sku_name in str(info.value)
        return
    plan = estimate(get_preset(preset_name), get_sku(sku_name))
    got = {key: getattr(plan, key) for key in expected}
    assert got == expected
    assert plan.required_gib <= plan.available_gib
    assert plan.available_gib == pytest.approx(UTIL * s["memory_mib"] / 1024)
    # Every fallback is explained.
    if plan.dtype != m["dtype"] or plan.runtime != "vllm":
        assert plan.reasons


@pytest.mark.parametrize(("preset_name", "sku_name"), PAIRS)
def test_every_plan_names_an_image_with_kernels_for_its_gpu(
    preset_name: str, sku_name: str
) -> None:
    """The acceptance check of issue 14: no plan may name an image whose measured arch lists
    (torch's, and vLLM's custom ops for the vLLM image) lack the SKU's GPU."""
    s = next(x for x in SKUS if x["name"] == sku_name)
    cc = _cc(s["compute_capability"])
    try:
        plan = estimate(get_preset(preset_name), get_sku(sku_name))
    except DoesNotFit as err:
        assert sku_name in str(err)  # refused, naming the instance type: nothing to run
        return
    for source, archs in KERNELS[plan.image].items():
        assert any(code_runs(a, cc) for a in archs), (
            f"{preset_name} on {sku_name} ({s['compute_capability']}) plans {plan.image}, "
            f"whose {source} is built for {archs}"
        )
