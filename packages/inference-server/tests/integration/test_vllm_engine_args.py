"""Every vLLM argument a plan makes is one the pinned vLLM accepts, checked by vLLM itself.

For every catalog preset on every SKU where the plan is vLLM (``kaito_presets.serving``), and
with no adapter, one rank-16 adapter, or adapters of ranks 8 and 64 mounted, this builds the
server config the controller writes, loads it as the server does (``ServerConfig``) and turns
it into engine arguments with ``engine_kwargs``. Then ``vllm_arg_check.py`` runs in the
kaito-inference image's own environment (vLLM 0.32 from uv.lock, synced by runtimes/envs.py into
~/.cache/kaito-runtime-envs) and feeds each set to vLLM's ``AsyncEngineArgs`` and its CLI parser.
No GPU is needed: nothing is loaded. First run: ~1 GB of vLLM wheels on top of the torch
`make install` already cached (19 s here); importing vLLM's argument code takes ~25 s.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kaito_inference.backends.vllm import VLLM_LORA_RANKS, engine_kwargs
from kaito_inference.config import ServerConfig
from kaito_presets.errors import DoesNotFit
from kaito_presets.presets import all_presets
from kaito_presets.server_config import inference_server_config
from kaito_presets.serving import plan_inference
from kaito_presets.skus import all_skus

from . import runtime_envs

CHECKER = Path(__file__).with_name("vllm_arg_check.py")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _adapters(root: Path, ranks: tuple[int, ...]) -> list[Path]:
    out = []
    for k, rank in enumerate(ranks):
        path = root / f"r{'-'.join(map(str, ranks))}" / f"adapter-{k}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))
        out.append(path)
    return out


def _cases(tmp: Path) -> list[dict[str, Any]]:
    variants = [_adapters(tmp, ranks) for ranks in ((), (16,), (8, 64))]
    seen: dict[str, dict[str, Any]] = {}
    for preset in all_presets():
        for sku in all_skus():
            try:
                plan = plan_inference(preset, sku)
            except DoesNotFit:
                continue
            if plan.runtime != "vllm":
                continue
            cfg = {
                **inference_server_config(preset, plan),
                "model": preset.hf_id,
                "served_model_name": preset.name,
            }
            config = ServerConfig.model_validate(cfg)
            for adapters in variants:
                kwargs = engine_kwargs(config, adapters)
                seen.setdefault(json.dumps(kwargs, sort_keys=True), kwargs)
    return list(seen.values())


def test_plans_engine_arguments_pass_vllms_own_parser(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    # Sanity of the sweep itself: LoRA on and off, parallelism and mistral formats all occur.
    assert len(cases) > 50
    assert any(c.get("enable_lora") is True and c["max_lora_rank"] == 64 for c in cases)
    assert any(c.get("enable_lora") is False for c in cases)
    assert any("pipeline_parallel_size" in c for c in cases)
    assert any("data_parallel_size" in c for c in cases)
    assert any(c.get("tokenizer_mode") == "mistral" for c in cases)
    # Two sets vLLM must refuse, so a checker that passes everything cannot pass this test.
    refused = [{"model": "m", "enable_lora": True, "max_lora_rank": 24}, {"model": "m", "nope": 1}]
    (tmp_path / "cases.json").write_text(json.dumps(cases + refused))

    envs = runtime_envs.envs()
    python = envs.sync(envs.image("kaito-inference"))
    run = subprocess.run(
        [str(python), str(CHECKER), str(tmp_path / "cases.json")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        # No GPU here: vLLM must be told to take its CPU platform, or building its config
        # defaults fails to detect a device. Flags, types and choices are the same dataclasses.
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "PYTHONWARNINGS": "ignore",
            "VLLM_TARGET_DEVICE": "cpu",
        },
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["checked"] == len(cases) + len(refused)
    failed = [f["kwargs"] for f in report["failures"]]
    assert failed == refused, json.dumps(report["failures"][:5], indent=1)
    assert "invalid choice: 24" in report["failures"][0]["problem"]
    # The rank table the server rounds to is vLLM's own.
    assert tuple(report["lora_ranks"]) == VLLM_LORA_RANKS
