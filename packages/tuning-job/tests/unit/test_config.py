"""Config layering, KAITO template compatibility and the table of refused configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kaito_tuning.cli import overrides_from_args, train_parser
from kaito_tuning.config import (
    TuningConfig,
    build_config,
    load_config,
    parse_set_override,
    read_config_file,
)
from kaito_tuning.errors import ConfigError

TEMPLATES = Path(__file__).parents[2] / "src" / "kaito_tuning" / "templates"


def test_defaults_are_kaito_paths_and_lora() -> None:
    cfg = build_config({})
    assert cfg.method == "lora"
    assert cfg.quantization is None
    assert cfg.model.pretrained_model_name_or_path == "/workspace/weights"
    assert cfg.training.output_dir == "/mnt/output"
    assert cfg.dataset.long_sample_policy == "truncate"


@pytest.mark.parametrize(("name", "method"), [("lora", "lora"), ("qlora", "qlora")])
def test_shipped_templates_load_and_imply_their_method(name: str, method: str) -> None:
    cfg = load_config(TEMPLATES / f"{name}-params.yaml")
    assert cfg.method == method
    assert cfg.lora.r == 8
    assert cfg.training.save_strategy == "no"
    assert cfg.collator.mlm is True
    if method == "qlora":
        assert cfg.quantization is not None
        assert cfg.quantization.load_in_4bit
        assert cfg.quantization.bnb_4bit_quant_type == "nf4"
        assert cfg.quantization.bnb_4bit_use_double_quant


def test_kaito_upstream_template_with_results_dir_is_accepted(tmp_path: Path) -> None:
    # The upstream chart's qlora template, verbatim in shape (output under /mnt/results).
    text = """
training_config:
  ModelConfig:
    torch_dtype: "bfloat16"
    local_files_only: true
    device_map: "auto"
  QuantizationConfig:
    load_in_4bit: true
    bnb_4bit_quant_type: "nf4"
    bnb_4bit_compute_dtype: "bfloat16"
    bnb_4bit_use_double_quant: true
  LoraConfig:
    r: 8
    lora_alpha: 8
    lora_dropout: 0.0
  TrainingArguments:
    output_dir: "/mnt/results"
    ddp_find_unused_parameters: false
    save_strategy: "no"
    per_device_train_batch_size: 1
  DataCollator:
    mlm: true
  DatasetConfig:
    shuffle_dataset: true
    train_test_split: 1
"""
    path = tmp_path / "training_config.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.method == "qlora"
    assert cfg.training.output_dir == "/mnt/results"


def test_flags_override_file_which_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "training_config": {
                    "LoraConfig": {"r": 16},
                    "TrainingArguments": {"learning_rate": 1e-3, "max_steps": 50},
                }
            }
        )
    )
    args = train_parser().parse_args(
        [
            "--config",
            str(path),
            "--model",
            "/m",
            "--data",
            "http://x/d.parquet",
            "--output",
            "/o",
            "--max-steps",
            "7",
            "--set",
            "LoraConfig.lora_alpha=32",
        ]
    )
    cfg = load_config(path, overrides_from_args(args))
    assert cfg.lora.r == 16  # file
    assert cfg.lora.lora_alpha == 32  # --set
    assert cfg.training.learning_rate == 1e-3  # file
    assert cfg.training.max_steps == 7  # flag beats file
    assert cfg.training.per_device_train_batch_size == 1  # default
    assert cfg.model.pretrained_model_name_or_path == "/m"
    assert cfg.dataset.dataset_path == "http://x/d.parquet"
    assert cfg.training.output_dir == "/o"


def test_method_flag_qlora_without_section_gets_nf4_double_quant() -> None:
    cfg = build_config({}, {"method": "qlora"})
    assert cfg.quantization is not None
    assert cfg.quantization.load_in_4bit
    assert cfg.quantization.bnb_4bit_quant_type == "nf4"
    assert cfg.quantization.bnb_4bit_use_double_quant


def test_set_override_parses_yaml_values() -> None:
    assert parse_set_override("LoraConfig.target_modules=[q_proj, v_proj]") == {
        "LoraConfig": {"target_modules": ["q_proj", "v_proj"]}
    }
    assert parse_set_override("training_config.TrainingArguments.bf16=false") == {
        "TrainingArguments": {"bf16": False}
    }


@pytest.mark.parametrize("item", ["LoraConfig.r", "=3", "LoraConfig.r=[1,"])
def test_set_override_rejects_malformed_items(item: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_set_override(item)


BAD_CONFIGS = [
    ({"LoraConfig": {"rank": 8}}, "training_config.LoraConfig.rank: unknown key"),
    ({"Lora": {"r": 8}}, "training_config.Lora: unknown key"),
    ({"TrainingArguments": {"lerning_rate": 1}}, "TrainingArguments.lerning_rate: unknown key"),
    ({"LoraConfig": {"r": 0}}, "training_config.LoraConfig.r: input should be greater than 0"),
    ({"LoraConfig": {"lora_dropout": 1.5}}, "training_config.LoraConfig.lora_dropout"),
    ({"TrainingArguments": {"learning_rate": "fast"}}, "TrainingArguments.learning_rate"),
    ({"DatasetConfig": {"train_test_split": 0}}, "DatasetConfig.train_test_split"),
    ({"DatasetConfig": {"long_sample_policy": "ignore"}}, "DatasetConfig.long_sample_policy"),
    ({"DatasetConfig": {"format": "alpaca"}}, "DatasetConfig.format"),
    ({"ModelConfig": {"torch_dtype": "int4"}}, "ModelConfig.torch_dtype"),
    (
        {"QuantizationConfig": {"load_in_4bit": True, "load_in_8bit": True}},
        "load_in_4bit and load_in_8bit cannot both be true",
    ),
    (
        {"method": "lora", "QuantizationConfig": {"load_in_4bit": True}},
        "method 'lora' trains a full-precision base but QuantizationConfig.load_in_4bit",
    ),
    (
        {"method": "qlora", "QuantizationConfig": {"load_in_4bit": False}},
        "method 'qlora' needs QuantizationConfig.load_in_4bit",
    ),
    ({"QuantizationConfig": {"bnb_4bit_quant_type": "int4"}}, "bnb_4bit_quant_type"),
    ({"DataCollator": {"mlm": True, "mask": 1}}, "training_config.DataCollator.mask: unknown key"),
]


@pytest.mark.parametrize(("values", "message"), BAD_CONFIGS)
def test_bad_configs_are_refused_naming_the_problem(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(values)
    assert message in str(info.value)


def test_all_problems_are_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"LoraConfig": {"rank": 1, "alpha": 2}})
    assert "LoraConfig.rank" in str(info.value)
    assert "LoraConfig.alpha" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("LoraConfig: {r: 8}\n", "unknown top-level key(s) LoraConfig"),
        ("- a\n- b\n", "expected a mapping"),
        ("training_config: [1]\n", "must be a mapping of sections"),
        ("training_config: {a: [\n", "parsing tuning config"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert message in str(info.value)


def test_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"reading tuning config .*nope\.yaml"):
        read_config_file(tmp_path / "nope.yaml")


def test_config_is_frozen() -> None:
    cfg = TuningConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.method = "qlora"  # type: ignore[misc]


def test_target_modules_string_forms() -> None:
    assert build_config(
        {"LoraConfig": {"target_modules": "q_proj, v_proj"}}
    ).lora.target_module_list() == [
        "q_proj",
        "v_proj",
    ]
    assert (
        build_config({"LoraConfig": {"target_modules": "all-linear"}}).lora.target_module_list()
        == "all-linear"
    )
    assert build_config({}).lora.target_module_list() is None


def test_explicit_config_flag_must_exist(tmp_path: Path) -> None:
    from kaito_tuning.cli import config_from_args

    args = train_parser().parse_args(["--config", str(tmp_path / "absent.yaml")])
    with pytest.raises(ConfigError, match="no such file"):
        config_from_args(args)
