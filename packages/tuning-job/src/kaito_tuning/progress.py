"""Progress a person can follow in `kubectl logs`, and the loss curve kept with the adapter.

`ProgressCallback` hooks the trainer's log events and prints one line per logging step:
step/total, loss, learning rate, tokens per second and an ETA. It keeps every point so that
`write` can save `loss_curve.csv` and `metrics.json` next to the adapter. The formatting and
arithmetic are plain functions so they are tested without a trainer.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.csv"


@dataclass(frozen=True)
class LossPoint:
    """One logged training step."""

    step: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_seen: int
    elapsed_s: float


def format_duration(seconds: float | None) -> str:
    """`1h02m03s`, `4m05s`, `12s`; `?` when unknown."""
    if seconds is None:
        return "?"
    total = round(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def eta_seconds(step: int, max_steps: int, elapsed_s: float) -> float | None:
    """Time left at the average pace so far, or None before the first step."""
    if step <= 0 or max_steps <= 0:
        return None
    return elapsed_s / step * max(max_steps - step, 0)


def tokens_per_second(tokens: int, elapsed_s: float) -> float:
    """Throughput, 0 when no time has passed."""
    return tokens / elapsed_s if elapsed_s > 0 else 0.0


def progress_line(point: LossPoint, max_steps: int) -> str:
    """The log line for one point."""
    pct = f" ({100 * point.step / max_steps:.0f}%)" if max_steps > 0 else ""
    rate = tokens_per_second(point.tokens_seen, point.elapsed_s)
    eta = format_duration(eta_seconds(point.step, max_steps, point.elapsed_s))
    return (
        f"step {point.step}/{max_steps}{pct} loss {point.loss:.4f} lr {point.learning_rate:.2e} "
        f"epoch {point.epoch:.2f} tokens/s {rate:.0f} elapsed {format_duration(point.elapsed_s)} "
        f"eta {eta}"
    )


class ProgressCallback(TrainerCallback):
    """Prints progress lines and remembers the loss curve."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] = logger.info,
    ) -> None:
        self._clock = clock
        self._emit = emit
        self._start = 0.0
        self._start_tokens = 0
        self.points: list[LossPoint] = []
        self.final: dict[str, float] = {}
        self.max_steps = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._start = self._clock()
        self._start_tokens = state.num_input_tokens_seen or 0
        self.max_steps = state.max_steps
        self._emit(
            f"training started: {state.max_steps} steps, batch {args.per_device_train_batch_size} "
            f"x accumulation {args.gradient_accumulation_steps} x {args.world_size} process(es)"
        )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            point = LossPoint(
                step=state.global_step,
                epoch=float(state.epoch or 0.0),
                loss=float(logs["loss"]),
                learning_rate=float(logs.get("learning_rate", 0.0)),
                tokens_seen=int((state.num_input_tokens_seen or 0) - self._start_tokens),
                elapsed_s=self._clock() - self._start,
            )
            self.points.append(point)
            self._emit(progress_line(point, state.max_steps))
        if "train_runtime" in logs:
            self.final = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}

    def summary(self) -> dict[str, Any]:
        """The metrics of the run so far (tokens and losses from the logged points)."""
        elapsed = self.final.get("train_runtime") or (self._clock() - self._start)
        tokens = self.points[-1].tokens_seen if self.points else 0
        losses = [p.loss for p in self.points]
        return {
            "steps": self.points[-1].step if self.points else 0,
            "max_steps": self.max_steps,
            "train_runtime_s": elapsed,
            "tokens_seen": tokens,
            "tokens_per_second": tokens_per_second(tokens, elapsed),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "min_loss": min(losses) if losses else None,
            "train_loss": self.final.get("train_loss"),
        }

    def write(self, output_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write `loss_curve.csv` and `metrics.json` into `output_dir`; return the metrics."""
        output_dir.mkdir(parents=True, exist_ok=True)
        with (output_dir / LOSS_CURVE_FILE).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(LossPoint.__dataclass_fields__))
            writer.writeheader()
            for point in self.points:
                writer.writerow(asdict(point))
        metrics = {**self.summary(), **(extra or {})}
        (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return metrics
