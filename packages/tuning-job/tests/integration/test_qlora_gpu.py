"""QLoRA on a CUDA GPU: the base really is 4-bit NF4 and the adapter trains (GPU lane only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from kaito_tuning.config import build_config
from kaito_tuning.train import run

from ..conftest import chat_rows, write_parquet

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU"),
    pytest.mark.skipif(
        importlib.util.find_spec("bitsandbytes") is None,
        reason="QLoRA needs bitsandbytes (the kaito-tuning[qlora] extra)",
    ),
]


def test_qlora_trains_a_4bit_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    data = write_parquet(tmp_path / "train.parquet", chat_rows(repeat=8))
    cfg = build_config(
        {
            "ModelConfig": {"pretrained_model_name_or_path": str(tiny_model_dir)},
            "DatasetConfig": {"dataset_path": str(data)},
            "TrainingArguments": {
                "output_dir": str(tmp_path / "out"),
                "max_steps": 16,
                "per_device_train_batch_size": 4,
                "learning_rate": 2e-2,
                "logging_steps": 2,
            },
        },
        {"method": "qlora"},
    )
    outcome = run(cfg)
    four_bit = [m for m in outcome.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "no 4-bit linear layers in the base model"
    assert all(m.weight.quant_type == "nf4" for m in four_bit)
    assert outcome.metrics["final_loss"] < outcome.metrics["first_loss"]
    assert outcome.metrics["peak_gpu_memory_bytes"] > 0
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
