"""The tuning configuration: one validated model built from defaults, a YAML file and flags.

The file is the ConfigMap the controller mounts (KAITO's `training_config.yaml` layout: a
top-level `training_config` map with the sections ModelConfig, QuantizationConfig, LoraConfig,
TrainingArguments, DatasetConfig and DataCollator). Values are layered as defaults < YAML <
command-line overrides, then validated once. Every section forbids unknown keys and every error
names the full key path (`training_config.LoraConfig.rank: unknown key`), so a typo in a
ConfigMap fails the Job at start-up instead of being silently ignored. Nothing here imports
torch, so the controller-facing rules stay cheap to test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kaito_tuning.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/mnt/config/training_config.yaml")
DEFAULT_MODEL_PATH = "/workspace/weights"
DEFAULT_DATA_DIR = "/mnt/data"
DEFAULT_OUTPUT_DIR = "/mnt/output"
ROOT_KEY = "training_config"

Method = Literal["lora", "qlora"]
DtypeName = Literal["auto", "bfloat16", "float16", "float32"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ModelSection(_Section):
    """How to load the base model and its tokenizer (KAITO `ModelConfig`)."""

    pretrained_model_name_or_path: str = Field(
        default=DEFAULT_MODEL_PATH, description="Local directory (or hub id) of the base model."
    )
    local_files_only: bool = Field(default=True, description="Never reach a model hub.")
    revision: str | None = Field(default=None, description="Hub revision; unused for local paths.")
    trust_remote_code: bool = Field(
        default=False, description="Allow model code shipped with weights."
    )
    torch_dtype: DtypeName = Field(
        default="bfloat16",
        description="Weight dtype. bfloat16 falls back to float16 on GPUs without bf16 and to "
        "float32 on CPU.",
    )
    device_map: str | None = Field(default="auto", description="Passed to from_pretrained.")
    chat_template: str | None = Field(
        default=None, description="Jinja chat template text, or a path to a file holding it."
    )
    attn_implementation: str | None = Field(default=None, description="e.g. sdpa, eager.")
    cache_dir: str | None = Field(default=None, description="Hub cache directory.")


class QuantizationSection(_Section):
    """bitsandbytes settings (KAITO `QuantizationConfig`); only used by method qlora."""

    quant_method: Literal["bitsandbytes"] = "bitsandbytes"
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = "uint8"
    llm_int8_threshold: float = 6.0
    llm_int8_skip_modules: list[str] | None = None
    llm_int8_enable_fp32_cpu_offload: bool = False
    llm_int8_has_fp16_weight: bool = False

    @property
    def quantizes(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit


QLORA_DEFAULT_QUANTIZATION = QuantizationSection(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_compute_dtype="bfloat16",
    bnb_4bit_use_double_quant=True,
)


class LoraSection(_Section):
    """The LoRA adapter (KAITO `LoraConfig`, a subset of PEFT's)."""

    r: int = Field(default=8, gt=0, description="Adapter rank.")
    lora_alpha: float = Field(default=8, gt=0, description="Scaling numerator (alpha / r).")
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | str | None = Field(
        default=None,
        description="Module names, a comma-separated string, 'all-linear', or unset to pick "
        "them per architecture.",
    )
    bias: Literal["none", "all", "lora_only"] = "none"
    init_lora_weights: bool | Literal["gaussian", "pissa", "olora"] = True
    layers_to_transform: list[int] | int | None = None
    layers_pattern: str | None = None
    modules_to_save: list[str] | None = None
    use_rslora: bool = False
    use_dora: bool = False
    task_type: Literal["CAUSAL_LM"] = "CAUSAL_LM"

    def target_module_list(self) -> list[str] | str | None:
        """Target modules normalised: a list, 'all-linear', or None (choose per architecture)."""
        value = self.target_modules
        if isinstance(value, str):
            if value.strip() == "all-linear":
                return "all-linear"
            items = [part.strip() for part in value.split(",") if part.strip()]
            return items or None
        return value or None


class TrainingSection(_Section):
    """Training arguments (KAITO `TrainingArguments`, forwarded to TRL's SFTConfig)."""

    output_dir: str = DEFAULT_OUTPUT_DIR
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, ge=-1, description="-1 means: run num_train_epochs.")
    per_device_train_batch_size: int = Field(default=1, gt=0)
    per_device_eval_batch_size: int = Field(default=1, gt=0)
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    optim: str = Field(default="adamw_torch_fused", description="TRL's default optimizer.")
    logging_steps: int = Field(default=10, gt=0)
    save_strategy: Literal["no", "steps", "epoch"] = "no"
    save_steps: int = Field(default=500, gt=0)
    save_total_limit: int | None = None
    eval_strategy: Literal["no", "steps", "epoch"] = "no"
    eval_steps: int | None = None
    seed: int = 42
    bf16: bool | None = Field(default=None, description="Unset: follow the resolved model dtype.")
    fp16: bool | None = Field(default=None, description="Unset: follow the resolved model dtype.")
    gradient_checkpointing: bool = Field(
        default=True, description="TRL's default: recompute activations to fit 16 GB GPUs."
    )
    max_length: int | None = Field(default=1024, gt=0, description="Token limit per sample.")
    packing: bool = False
    completion_only_loss: bool | None = None
    assistant_only_loss: bool = False
    ddp_find_unused_parameters: bool | None = None
    dataloader_num_workers: int = Field(default=0, ge=0)
    report_to: list[str] | str = "none"

    # Resolved by the trainer (precision from the weight dtype, no eval without an eval split).
    _RESOLVED: ClassVar[frozenset[str]] = frozenset({"bf16", "fp16", "eval_strategy"})

    def sft_kwargs(self) -> dict[str, Any]:
        """The section as keyword arguments of TRL's ``SFTConfig`` (same names), except the
        keys the trainer resolves itself (``bf16``, ``fp16``, ``eval_strategy``)."""
        return self.model_dump(exclude=set(self._RESOLVED))


class DatasetSection(_Section):
    """Where the data is and how to read it (KAITO `DatasetConfig`, plus a column mapping)."""

    dataset_path: str | None = Field(
        default=None,
        description="File, directory or http(s) URL; relative paths are under /mnt/data.",
    )
    dataset_extension: Literal["parquet", "json", "jsonl", "csv", "txt"] | None = None
    format: Literal["auto", "messages", "prompt_completion", "text"] = "auto"
    messages_column: str | None = Field(
        default=None, description="Column of [{role, content}] lists."
    )
    context_column: str | None = Field(
        default=None, description="Prompt column (prompt/completion)."
    )
    response_column: str | None = Field(default=None, description="Completion column.")
    text_column: str | None = Field(default=None, description="Plain-text column.")
    shuffle_dataset: bool = True
    shuffle_seed: int = 42
    train_test_split: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Train share; 1 = no eval."
    )
    long_sample_policy: Literal["truncate", "drop", "error"] = Field(
        default="truncate",
        description="What to do with samples longer than TrainingArguments.max_length.",
    )
    max_samples: int | None = Field(default=None, gt=0, description="Use at most this many rows.")


class CollatorSection(_Section):
    """KAITO `DataCollator`. Causal LMs have no mask token, so `mlm` is accepted and ignored."""

    mlm: bool = False
    mlm_probability: float = Field(default=0.15, gt=0, lt=1)
    pad_to_multiple_of: int | None = Field(default=None, gt=0)


class TuningConfig(_Section):
    """Everything one tuning run needs, already layered and checked.

    Section defaults are shared instances, which is safe because every section is frozen.
    """

    method: Method = "lora"
    model: ModelSection = Field(default=ModelSection(), alias="ModelConfig")
    quantization: QuantizationSection | None = Field(default=None, alias="QuantizationConfig")
    lora: LoraSection = Field(default=LoraSection(), alias="LoraConfig")
    training: TrainingSection = Field(default=TrainingSection(), alias="TrainingArguments")
    dataset: DatasetSection = Field(default=DatasetSection(), alias="DatasetConfig")
    collator: CollatorSection = Field(default=CollatorSection(), alias="DataCollator")

    @model_validator(mode="before")
    @classmethod
    def _infer_method(cls, data: Any) -> Any:
        # KAITO's file has no method key: the template decides. Infer it when no flag set it.
        if isinstance(data, dict) and data.get("method") is None:
            quant = data.get("QuantizationConfig") or data.get("quantization") or {}
            quantizes = isinstance(quant, dict) and (
                quant.get("load_in_4bit") is True or quant.get("load_in_8bit") is True
            )
            data = {**data, "method": "qlora" if quantizes else "lora"}
        return data

    @model_validator(mode="after")
    def _check_method(self) -> TuningConfig:
        quant = self.quantization
        if quant is not None and quant.load_in_4bit and quant.load_in_8bit:
            raise ValueError("QuantizationConfig.load_in_4bit and load_in_8bit cannot both be true")
        if self.method == "lora" and quant is not None and quant.quantizes:
            bits = "load_in_4bit" if quant.load_in_4bit else "load_in_8bit"
            raise ValueError(
                f"method 'lora' trains a full-precision base but QuantizationConfig.{bits} is "
                "true; use method 'qlora' or set it to false"
            )
        if self.method == "qlora":
            if quant is None:
                object.__setattr__(self, "quantization", QLORA_DEFAULT_QUANTIZATION)
            elif not quant.quantizes:
                raise ValueError(
                    "method 'qlora' needs QuantizationConfig.load_in_4bit (or load_in_8bit) "
                    "set to true"
                )
        return self


def format_validation_error(err: ValidationError, *, root: str = ROOT_KEY) -> str:
    """One line per problem, each naming the full key path as written in the YAML file."""
    lines = []
    for item in err.errors():
        loc = [str(part) for part in item["loc"]]
        path = ".".join([root, *loc]) if loc else root
        if item["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key")
        else:
            msg = item["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            lines.append(f"{path}: {msg[:1].lower()}{msg[1:]}")
    return "; ".join(lines)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read the YAML file and return the mapping under `training_config` (may be empty)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(
            f"reading tuning config {path}: {err.strerror or err}",
            hint="check the ConfigMap named in tuning.config is mounted at this path",
        ) from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"parsing tuning config {path}: {err}") from err
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"tuning config {path}: expected a mapping with key '{ROOT_KEY}'")
    unknown = sorted(str(key) for key in raw if key != ROOT_KEY)
    if unknown:
        raise ConfigError(
            f"tuning config {path}: unknown top-level key(s) {', '.join(unknown)}; "
            f"every setting lives under '{ROOT_KEY}'"
        )
    body = raw.get(ROOT_KEY) or {}
    if not isinstance(body, dict):
        raise ConfigError(f"tuning config {path}: '{ROOT_KEY}' must be a mapping of sections")
    return body


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `base` updated by `override`, merging nested mappings (override wins)."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def parse_set_override(item: str) -> dict[str, Any]:
    """Turn `Section.key=value` (value parsed as YAML) into a nested override mapping."""
    key, sep, value = item.partition("=")
    parts = [part for part in key.strip().split(".") if part]
    if not sep or not parts:
        raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. LoraConfig.r=16")
    if parts[0] == ROOT_KEY:
        parts = parts[1:]
    try:
        parsed: Any = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {err}") from err
    nested: dict[str, Any] = {parts[-1]: parsed}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def build_config(
    file_values: dict[str, Any], overrides: dict[str, Any] | None = None
) -> TuningConfig:
    """Validate defaults < file values < overrides into a TuningConfig, or raise ConfigError."""
    merged = deep_merge(file_values, overrides or {})
    try:
        return TuningConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(f"invalid tuning config: {format_validation_error(err)}") from err


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> TuningConfig:
    """Read `path` (if any), apply `overrides` and validate."""
    file_values = read_config_file(path) if path is not None else {}
    return build_config(file_values, overrides)
