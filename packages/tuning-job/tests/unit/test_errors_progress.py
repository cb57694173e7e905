"""Exit codes and termination messages; progress lines, ETA and the metrics files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from kaito_tuning.errors import (
    TERMINATION_MESSAGE_LIMIT,
    ConfigError,
    DataError,
    OutOfMemoryError,
    RegistryAuthError,
    oom_error,
    report_failure,
    termination_message,
)
from kaito_tuning.progress import (
    LOSS_CURVE_FILE,
    METRICS_FILE,
    LossPoint,
    ProgressCallback,
    eta_seconds,
    format_duration,
    progress_line,
)


def test_report_failure_writes_reason_message_and_hint(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    code = report_failure(DataError("dataset row 3: bad", hint="fix row 3"), log)
    assert code == 3
    assert log.read_text() == "InvalidDataset: dataset row 3: bad; fix row 3"


def test_exit_codes_are_distinct_per_class() -> None:
    classes = [ConfigError, DataError, OutOfMemoryError, RegistryAuthError]
    assert len({cls.exit_code for cls in classes}) == len(classes)


def test_unexpected_errors_exit_1_and_still_explain(tmp_path: Path) -> None:
    log = tmp_path / "t"
    assert report_failure(RuntimeError("boom"), log) == 1
    assert log.read_text() == "UnexpectedError: RuntimeError: boom"


def test_torch_oom_gets_the_advice(tmp_path: Path) -> None:
    import torch

    log = tmp_path / "t"
    assert report_failure(torch.OutOfMemoryError("CUDA out of memory"), log) == 5
    text = log.read_text()
    assert text.startswith("OutOfGPUMemory:")
    assert "per_device_train_batch_size" in text
    assert "more GPU memory" in text


def test_oom_error_names_the_batch_size() -> None:
    assert "(per_device_train_batch_size=4)" in str(oom_error("training", batch_size=4))


def test_termination_message_is_capped_keeping_the_end() -> None:
    text = termination_message(DataError("x" * 10_000, hint="the hint"))
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert text.endswith("the hint")


def test_unwritable_termination_log_does_not_mask_the_error(tmp_path: Path) -> None:
    assert report_failure(ConfigError("bad"), tmp_path / "no" / "such" / "dir") == 2


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?"), (0, "0s"), (59.4, "59s"), (245, "4m05s"), (3723, "1h02m03s")]
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_from_the_pace_so_far() -> None:
    assert eta_seconds(10, 100, 20.0) == pytest.approx(180.0)
    assert eta_seconds(0, 100, 5.0) is None
    assert eta_seconds(100, 100, 50.0) == 0


def test_progress_line_has_step_loss_rate_and_eta() -> None:
    point = LossPoint(
        step=25, epoch=0.5, loss=1.23456, learning_rate=2e-4, tokens_seen=5000, elapsed_s=10.0
    )
    line = progress_line(point, 100)
    assert line == (
        "step 25/100 (25%) loss 1.2346 lr 2.00e-04 epoch 0.50 tokens/s 500 elapsed 10s eta 30s"
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_callback_logs_lines_and_writes_curve_and_metrics(tmp_path: Path) -> None:
    clock, lines = _Clock(), []
    cb = ProgressCallback(clock=clock, emit=lines.append)
    args = SimpleNamespace(
        per_device_train_batch_size=2, gradient_accumulation_steps=1, world_size=1
    )
    state = SimpleNamespace(max_steps=4, num_input_tokens_seen=0, global_step=0, epoch=0.0)
    cb.on_train_begin(args, state, None)  # type: ignore[arg-type]
    for step, loss in ((2, 3.0), (4, 1.5)):
        clock.now += 2.0
        state.global_step, state.epoch, state.num_input_tokens_seen = step, step / 4, step * 100
        cb.on_log(args, state, None, logs={"loss": loss, "learning_rate": 1e-3})  # type: ignore[arg-type]
    cb.on_log(args, state, None, logs={"train_runtime": 4.0, "train_loss": 2.25})  # type: ignore[arg-type]
    assert lines[0].startswith("training started: 4 steps, batch 2")
    assert lines[1].startswith("step 2/4 (50%) loss 3.0000")
    assert "tokens/s 100" in lines[1]
    assert "eta 2s" in lines[1]
    metrics = cb.write(tmp_path, {"method": "lora"})
    on_disk = json.loads((tmp_path / METRICS_FILE).read_text())
    assert on_disk == metrics
    assert metrics["first_loss"] == 3.0
    assert metrics["final_loss"] == 1.5
    assert metrics["tokens_seen"] == 400
    assert metrics["tokens_per_second"] == pytest.approx(100.0)
    assert metrics["train_loss"] == 2.25
    assert metrics["method"] == "lora"
    rows = list(csv.DictReader((tmp_path / LOSS_CURVE_FILE).open()))
    assert [(r["step"], r["loss"]) for r in rows] == [("2", "3.0"), ("4", "1.5")]
