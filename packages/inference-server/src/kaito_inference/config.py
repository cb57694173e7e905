"""Server configuration: one pydantic-settings model, layered YAML < environment < CLI flags.

Why this exists: the workspace controller renders a YAML file (ConfigMap key
``inference_config.yaml``) and passes a few flags; operators override single values with
``KAITO_INFERENCE_*`` environment variables. This is the only module that reads the environment.
Unknown YAML keys are errors that name the keys, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendName = Literal["vllm", "transformers", "fake"]

# Requests admitted into the backend at once when max_concurrency is not set. The transformers
# backend decodes up to max_concurrency requests in one batch (its KV cache grows with the batch);
# vLLM batches continuously inside its own scheduler.
DEFAULT_CONCURRENCY: dict[str, int] = {"transformers": 1, "vllm": 256, "fake": 64}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key or file."""


class ServerConfig(BaseSettings):
    """Settings of ``kaito-inference serve``. Every field is a YAML key and a flag."""

    model_config = SettingsConfigDict(
        env_prefix="KAITO_INFERENCE_", extra="forbid", validate_default=True
    )

    model: str | None = Field(
        None, description="Local directory with the weights, or a Hugging Face model id."
    )
    backend: BackendName = Field("vllm", description="Inference backend.")
    host: str = Field("0.0.0.0", description="Address to bind.")  # a pod binds all interfaces
    port: int = Field(5000, ge=1, le=65535, description="Port to listen on (KAITO uses 5000).")
    served_model_name: str | None = Field(
        None, description="Model id clients use; defaults to the model directory name or id."
    )
    adapters_dir: Path = Field(
        Path("/mnt/adapter"), description="Each sub-directory (peft format) is served as a model."
    )
    adapter_strengths: dict[str, float] = Field(
        default_factory=dict, description="Strength in [0, 1] per adapter name (default 1.0)."
    )
    allow_runtime_lora: bool = Field(
        True, description="Enable /v1/load_lora_adapter and /v1/unload_lora_adapter."
    )
    max_model_len: int | None = Field(
        None, gt=0, description="Context length; defaults to the model's own maximum."
    )
    dtype: str = Field("auto", description="Weights dtype: auto, float16, bfloat16, float32.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallel size.")
    gpu_memory_utilization: float = Field(
        0.84, gt=0, le=1, description="vLLM share of GPU memory for weights and KV cache."
    )
    tool_call_parser: str | None = Field(
        None, description="Tool-call parser name (vLLM's names; transformers: hermes)."
    )
    reasoning_parser: str | None = Field(None, description="vLLM reasoning parser name.")
    chat_template: str | None = Field(
        None, description="Path to a Jinja chat template, or the template itself."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the model repo.")
    offline: bool = Field(False, description="Forbid any download; the model must be local.")
    hf_token_file: Path | None = Field(
        None, description="File holding a Hugging Face access token (a mounted secret)."
    )
    hf_token: SecretStr | None = Field(
        None, description="Hugging Face token; also read from HF_TOKEN. Prefer hf_token_file."
    )
    api_keys_file: Path | None = Field(
        None,
        description="File with one bearer token per line; when set every endpoint but "
        "/health* requires one of them (admin endpoints included).",
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        description="Requests generating at once (the transformers backend's batch size); "
        "others wait in arrival order (default: transformers 1, vllm 256).",
    )
    max_waiting_requests: int = Field(
        1024, ge=0, description="Requests allowed to wait; beyond that the server answers 429."
    )
    max_request_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Larger request bodies are answered with 413."
    )
    vllm_engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="vLLM engine arguments (snake_case), passed through as-is; they win over the "
        "ones the server derives. enable_lora: true/false overrides the default (LoRA on only "
        "when adapters are mounted at start-up, sized from their ranks).",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_format: Literal["text", "json"] = Field("text", description="Log format.")

    @field_validator("adapter_strengths")
    @classmethod
    def _strengths_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"adapter strengths must be in [0, 1], got {bad}")
        return value

    @model_validator(mode="after")
    def _model_required(self) -> ServerConfig:
        if self.model is None and self.backend != "fake":
            raise ValueError(f"model is required for the {self.backend} backend")
        return self

    @property
    def model_name(self) -> str:
        """The id clients use for the base model."""
        if self.served_model_name:
            return self.served_model_name
        if self.model is None:
            return "fake-model"
        return Path(self.model).name if Path(self.model).exists() else self.model

    @property
    def concurrency(self) -> int:
        """Requests admitted into the backend at once."""
        return self.max_concurrency or DEFAULT_CONCURRENCY[self.backend]

    def resolved_hf_token(self) -> str | None:
        """The Hugging Face token from ``hf_token_file`` or ``hf_token``, if any."""
        if self.hf_token_file is not None:
            return self.hf_token_file.read_text().strip() or None
        return self.hf_token.get_secret_value() if self.hf_token else None

    def api_keys(self) -> frozenset[str]:
        """Bearer tokens accepted by the server (empty: auth is off)."""
        if self.api_keys_file is None:
            return frozenset()
        lines = self.api_keys_file.read_text().splitlines()
        return frozenset(line.strip() for line in lines if line.strip())


def read_yaml_config(path: Path) -> dict[str, Any]:
    """Read a YAML config file and reject keys that are not ServerConfig fields."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"reading config file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"parsing config file {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    unknown = sorted(set(data) - set(ServerConfig.model_fields))
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}")
    return data


def _env_layer() -> dict[str, Any]:
    prefix = ServerConfig.model_config.get("env_prefix", "")
    layer: dict[str, Any] = {}
    for name in ServerConfig.model_fields:
        raw = os.environ.get(f"{prefix}{name.upper()}")
        if raw is not None:
            layer[name] = raw
    if "hf_token" not in layer and os.environ.get("HF_TOKEN"):
        layer["hf_token"] = os.environ["HF_TOKEN"]
    return layer


def _parse_env_value(name: str, raw: str) -> Any:
    # Dict fields arrive as JSON or YAML text in the environment.
    annotation = str(ServerConfig.model_fields[name].annotation)
    return yaml.safe_load(raw) if annotation.startswith("dict") else raw


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> ServerConfig:
    """Build the config from a YAML file, then ``KAITO_INFERENCE_*`` env, then ``overrides``."""
    merged: dict[str, Any] = read_yaml_config(path) if path is not None else {}
    merged.update({k: _parse_env_value(k, v) for k, v in _env_layer().items()})
    merged.update(overrides or {})
    try:
        # Init values win over pydantic-settings' own env source, which therefore only re-reads
        # the env values already merged above: the precedence stays YAML < env < flags.
        return ServerConfig.model_validate(merged)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from err


def export_hub_env(config: ServerConfig) -> None:
    """Set the Hugging Face hub variables that ``offline`` and the token imply, process-wide.

    Must run before ``huggingface_hub`` is imported by a backend.
    """
    if config.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    token = config.resolved_hf_token()
    if token:
        os.environ["HF_TOKEN"] = token
