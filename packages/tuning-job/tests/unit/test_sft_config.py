"""The SFTConfig kaito-tune hands to TRL: precision per device, logging, token counting."""

from __future__ import annotations

import pytest
from kaito_tuning.config import build_config
from kaito_tuning.train import build_sft_config, mixed_precision


@pytest.mark.parametrize(
    ("dtype", "cuda", "file", "expected"),
    [
        ("bfloat16", True, {}, (True, False)),
        ("float16", True, {}, (False, True)),  # V100: bf16 template resolved to float16
        ("float32", False, {}, (False, False)),
        ("bfloat16", True, {"bf16": False}, (False, False)),  # the file wins
    ],
)
def test_mixed_precision(
    dtype: str, cuda: bool, file: dict[str, bool], expected: tuple[bool, bool]
) -> None:
    cfg = build_config({"TrainingArguments": file})
    assert mixed_precision(cfg, dtype=dtype, cuda=cuda) == expected


def test_cpu_runs_use_full_precision_even_if_the_template_says_bf16() -> None:
    args = build_sft_config(build_config({}), dtype="float32", cuda=False, has_eval=False)
    assert (args.bf16, args.fp16) == (False, False)


def test_training_section_is_carried_over_on_cpu() -> None:
    cfg = build_config(
        {
            "TrainingArguments": {
                "output_dir": "/tmp/o",
                "max_steps": 5,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 2,
                "learning_rate": 1e-3,
                "max_length": 256,
                "eval_strategy": "steps",
                "eval_steps": 2,
            },
            "DataCollator": {"pad_to_multiple_of": 8},
        }
    )
    args = build_sft_config(cfg, dtype="float32", cuda=False, has_eval=False)
    assert (args.output_dir, args.max_steps, args.per_device_train_batch_size) == ("/tmp/o", 5, 4)
    assert args.gradient_accumulation_steps == 2
    assert args.learning_rate == 1e-3
    assert args.max_length == 256
    assert args.pad_to_multiple_of == 8
    assert args.eval_strategy == "no"  # no eval split: evaluation is off whatever the file says
    assert args.include_num_input_tokens_seen == "non_padding"
    assert args.disable_tqdm is True
    assert args.gradient_checkpointing is True
    assert args.report_to == []
    with_eval = build_sft_config(cfg, dtype="float32", cuda=False, has_eval=True)
    assert with_eval.eval_strategy == "steps"


def test_every_training_argument_is_an_sft_config_field() -> None:
    # build_sft_config forwards the section whole, so a key TRL does not have would fail there.
    import dataclasses

    from kaito_tuning.config import TrainingSection
    from trl.trainer.sft_config import SFTConfig

    sft_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    assert set(TrainingSection.model_fields) - sft_fields == set()
