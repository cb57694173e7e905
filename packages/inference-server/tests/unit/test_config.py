"""ServerConfig: YAML < env < flags, unknown keys named, ranges checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_inference.config import ConfigError, ServerConfig, load_config


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inference_config.yaml"
    path.write_text(text)
    return path


def test_defaults_match_kaito() -> None:
    cfg = ServerConfig(model="/weights")
    assert cfg.port == 5000
    assert cfg.adapters_dir == Path("/mnt/adapter")
    assert cfg.backend == "vllm"
    assert cfg.concurrency == 256
    assert ServerConfig(model="x", backend="transformers").concurrency == 1


def test_layering_yaml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(tmp_path, "model: /from-yaml\nport: 7000\nmax_model_len: 512\ndtype: float16\n")
    monkeypatch.setenv("KAITO_INFERENCE_PORT", "7001")
    monkeypatch.setenv("KAITO_INFERENCE_MAX_MODEL_LEN", "1024")
    monkeypatch.setenv("KAITO_INFERENCE_ADAPTER_STRENGTHS", '{"a": 0.5}')
    cfg = load_config(path, {"port": 7002})
    assert cfg.model == "/from-yaml"  # yaml only
    assert cfg.dtype == "float16"
    assert cfg.max_model_len == 1024  # env beats yaml
    assert cfg.port == 7002  # flag beats env
    assert cfg.adapter_strengths == {"a": 0.5}


def test_unknown_yaml_keys_are_named(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "model: m\nmax_model_length: 5\ngpu_mem: 1\n")
    with pytest.raises(ConfigError, match="unknown keys gpu_mem, max_model_length"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("model: m\nport: 0\n", "port"),
        ("model: m\nadapter_strengths: {a: 1.5}\n", "adapter_strengths"),
        ("model: m\nbackend: tensorrt\n", "backend"),
        ("backend: vllm\n", "model is required"),
        ("model: m\ngpu_memory_utilization: 1.5\n", "gpu_memory_utilization"),
    ],
)
def test_invalid_values_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(_yaml(tmp_path, text))


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_yaml(tmp_path, "- a\n- b\n"))


def test_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text("k1\n\n  k2  \n")
    token = tmp_path / "token"
    token.write_text("hf_abc\n")
    cfg = ServerConfig(model="m", api_keys_file=keys, hf_token_file=token)
    assert cfg.api_keys() == {"k1", "k2"}
    assert cfg.resolved_hf_token() == "hf_abc"
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert load_config(None, {"model": "m"}).resolved_hf_token() == "hf_env"


def test_served_name_defaults_to_directory_name(tmp_path: Path) -> None:
    (tmp_path / "phi-3").mkdir()
    assert ServerConfig(model=str(tmp_path / "phi-3")).model_name == "phi-3"
    assert ServerConfig(model="microsoft/Phi-3-mini").model_name == "microsoft/Phi-3-mini"
    assert ServerConfig(model="x", served_model_name="p").model_name == "p"


def test_cli_parses_the_controller_command_line() -> None:
    from kaito_inference.cli import build_parser

    args = build_parser().parse_args(
        [
            "serve",
            "--config",
            "/etc/kaito/inference_config.yaml",
            "--model",
            "/w",
            "--backend",
            "vllm",
            "--port",
            "5000",
            "--adapters-dir",
            "/mnt/adapter",
            "--served-model-name",
            "phi-3",
            "--offline",
        ]
    )
    assert (args.model, args.backend, args.port, args.served_model_name) == (
        "/w",
        "vllm",
        5000,
        "phi-3",
    )
    assert args.offline is True
    assert args.trust_remote_code is None  # not given: does not override YAML
