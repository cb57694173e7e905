"""LoRA training on CPU with the tiny model: behaviour, files, CLI, and the inference server."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from kaito_tuning.cli import main as tune_main
from kaito_tuning.config import build_config
from kaito_tuning.errors import ConfigError, DataError, InputFetchError
from kaito_tuning.train import SENTINEL_FILE, TrainOutcome, run
from safetensors.torch import load_file
from transformers import TrainerCallback

from ..conftest import chat_rows, serve_directory, write_jsonl, write_parquet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEMPLATES = Path(__file__).parents[2] / "src" / "kaito_tuning" / "templates"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json")


class _Snapshot(TrainerCallback):
    """Copies the trainable parameters when training starts (TRL's "params changed" check)."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]
        self.before = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }


@pytest.fixture(scope="module")
def trained(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainOutcome, _Snapshot]:
    # A repetitive chat set served over HTTP from loopback, as a Workspace's input.urls.
    root = tmp_path_factory.mktemp("www")
    write_parquet(root / "train.parquet", chat_rows(repeat=8))
    with serve_directory(root) as base_url:
        cfg = build_config(
            {
                "ModelConfig": {"pretrained_model_name_or_path": str(tiny_model_dir)},
                "DatasetConfig": {"dataset_path": f"{base_url}/train.parquet?download=true"},
                "TrainingArguments": {
                    "output_dir": str(tmp_path_factory.mktemp("out")),
                    "max_steps": 16,
                    "per_device_train_batch_size": 4,
                    "learning_rate": 2e-2,
                    "logging_steps": 2,
                },
            },
            {"method": "lora"},
        )
        snapshot = _Snapshot()
        outcome = run(cfg, callbacks=(snapshot,))
    return outcome, snapshot


def test_trainable_weights_change_and_base_weights_do_not(
    trained: tuple[TrainOutcome, _Snapshot], tiny_model_dir: Path
) -> None:
    outcome, snapshot = trained
    assert snapshot.before, "no trainable parameters were seen"
    assert all("lora_" in name for name in snapshot.before)
    after = dict(outcome.model.named_parameters())
    for name, before in snapshot.before.items():
        assert not torch.equal(before, after[name].detach()), f"{name} did not change"
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    compared = 0
    for name, param in outcome.model.named_parameters():
        if param.requires_grad:
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(param.detach(), base[key]), f"base weight {key} changed"
        compared += 1
    assert compared == len(base)


def test_loss_goes_down_on_a_repetitive_set(trained: tuple[TrainOutcome, _Snapshot]) -> None:
    metrics = trained[0].metrics
    assert metrics["steps"] == 16
    assert metrics["final_loss"] < 0.6 * metrics["first_loss"]
    assert metrics["tokens_per_second"] > 0


def test_output_directory_has_adapter_tokenizer_metrics_and_curve(
    trained: tuple[TrainOutcome, _Snapshot], tiny_model_dir: Path
) -> None:
    out = trained[0].output_dir
    for name in (*ADAPTER_FILES, "metrics.json", "loss_curve.csv", SENTINEL_FILE):
        assert (out / name).is_file(), name
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA"
    assert set(adapter["target_modules"]) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in tensors.items())
    curve = (out / "loss_curve.csv").read_text().splitlines()
    assert curve[0] == "step,epoch,loss,learning_rate,tokens_seen,elapsed_s"
    assert len(curve) == 1 + 9  # first step, then every 2 steps
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["samples"] == 32
    assert on_disk["peak_rss_bytes"] > 0


async def test_adapter_loads_in_the_inference_server_and_changes_its_output(
    trained: tuple[TrainOutcome, _Snapshot], tiny_model_dir: Path
) -> None:
    from kaito_inference.backends.base import AdapterSpec, GenerationStats
    from kaito_inference.backends.transformers import TransformersBackend
    from kaito_inference.config import ServerConfig
    from kaito_inference.schemas import ChatCompletionRequest

    backend = TransformersBackend(
        ServerConfig(
            model=str(tiny_model_dir), backend="transformers", offline=True, dtype="float32"
        )
    )
    await backend.start()
    try:
        await backend.load_adapter(AdapterSpec(name="tuned", path=trained[0].output_dir))
        assert "tuned" in [card.id for card in backend.models()]
        request = ChatCompletionRequest(
            model="tuned",
            messages=[{"role": "user", "content": "What is KAITO?"}],
            max_tokens=12,
            temperature=0,
        )
        base = await backend.chat(request, adapter=None, stats=GenerationStats())
        tuned = await backend.chat(request, adapter="tuned", stats=GenerationStats())
    finally:
        await backend.aclose()
    base_text = base.choices[0].message.content  # type: ignore[union-attr]
    tuned_text = tuned.choices[0].message.content  # type: ignore[union-attr]
    # Greedy decoding of the same prompt: only the adapter differs between the two calls.
    assert base_text
    assert tuned_text != base_text


def _cli(tiny_model_dir: Path, data: str, out: Path, log: Path, *extra: str) -> int:
    return tune_main(
        [
            "--config",
            str(TEMPLATES / "lora-params.yaml"),
            "--model",
            str(tiny_model_dir),
            "--method",
            "lora",
            "--data",
            data,
            "--output",
            str(out),
            "--max-steps",
            "3",
            "--set",
            "TrainingArguments.logging_steps=1",
            "--termination-log",
            str(log),
            *extra,
        ]
    )


def test_cli_trains_from_a_url_and_logs_progress(
    tiny_model_dir: Path,
    http_dir: tuple[Path, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, base_url = http_dir
    write_jsonl(root / "train.jsonl", chat_rows(repeat=2))
    caplog.set_level(logging.INFO)
    split = ("--set", "DatasetConfig.train_test_split=0.75")
    code = _cli(tiny_model_dir, f"{base_url}/train.jsonl", tmp_path / "out", tmp_path / "t", *split)
    assert code == 0
    assert not (tmp_path / "t").exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "kaito_tuning.progress"]
    assert any(line.startswith("step 3/3 (100%) loss ") for line in lines), lines
    assert all("tokens/s" in line and "eta" in line for line in lines[1:])
    for name in ADAPTER_FILES:
        assert (tmp_path / "out" / name).is_file()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["samples"], metrics["eval_samples"]) == (6, 2)
    assert metrics["eval_loss"] > 0


@pytest.mark.parametrize(
    ("setup", "extra", "error", "message"),
    [
        ("missing-url", (), InputFetchError, "fetching http://127.0.0.1"),
        ("wrong-columns", (), DataError, "cannot tell the dataset format"),
        ("empty", (), DataError, "it has no rows"),
        (
            "chat",
            ("--method", "qlora", "--config", str(TEMPLATES / "qlora-params.yaml")),
            ConfigError,
            "method 'qlora' needs a CUDA GPU",
        ),
        ("chat", ("--method", "qlora"), ConfigError, "needs QuantizationConfig.load_in_4bit"),
        (
            "chat",
            ("--set", "DatasetConfig.long_sample_policy=error", "--max-length", "8"),
            DataError,
            "over TrainingArguments.max_length=8",
        ),
        ("chat", ("--set", "LoraConfig.target_modules=[q_proj]"), ConfigError, "q_proj not found"),
        ("chat", ("--set", "LoraConfig.rank=4"), ConfigError, "LoraConfig.rank: unknown key"),
    ],
)
def test_cli_failures_exit_with_their_code_and_termination_message(
    tiny_model_dir: Path,
    http_dir: tuple[Path, str],
    tmp_path: Path,
    setup: str,
    extra: tuple[str, ...],
    error: type[Exception],
    message: str,
) -> None:
    _root, base_url = http_dir
    data = f"{base_url}/missing.parquet"
    if setup == "wrong-columns":
        data = str(write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}]))
    elif setup == "empty":
        data = str(write_jsonl(tmp_path / "empty.jsonl", []))
    elif setup == "chat":
        data = str(write_jsonl(tmp_path / "chat.jsonl", chat_rows(repeat=1)))
    log = tmp_path / "termination-log"
    code = _cli(tiny_model_dir, data, tmp_path / "out", log, *extra)
    assert code == error.exit_code  # type: ignore[attr-defined]
    text = log.read_text()
    assert text.startswith(error.reason + ": ")  # type: ignore[attr-defined]
    assert message in text
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()
