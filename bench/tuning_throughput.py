"""Training throughput and peak memory: `kaito-tune` against a plain TRL SFTTrainer script.

Both sides train the same LoRA (same tiny model, data, order, batch, steps, learning rate and
LoRA settings) in a fresh process each, back to back and alternating, so that import caches and
machine load hit both alike. Throughput is non-padding tokens seen by the trainer divided by
the trainer's own `train_runtime` (the same definition on both sides), and also per CPU-second
of `train()` (process time), which shared, overloaded CI machines distort far less than wall
time. Peak memory is the child process's peak RSS from wait4 (plus peak CUDA memory on a
GPU). The summary prints medians, the best wall rate, and the kaito/TRL ratios.

    uv run python bench/tuning_throughput.py [--rounds 3] [--steps 40] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ANSWERS = (
    ("What is KAITO?", "KAITO is an operator that automates AI model inference and tuning."),
    ("Say hello.", "Hello! How are you today? I am a tiny language model."),
    ("Count to ten.", "One two three four five six seven eight nine ten."),
    ("Name a capital.", "Paris is the capital of France."),
    ("Write a poem.", "Clouds over rivers, mountains by the sea, the quick brown fox runs free."),
)
TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]  # kaito-tune's Phi-3 choice


def _prepare(work: Path, rows: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from kaito_inference.testing.tiny_model import build_tiny_model

    model = build_tiny_model(work / "model", seed=0)
    data = []
    for i in range(rows):
        q, a = ANSWERS[i % len(ANSWERS)]
        data.append(
            {
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": f"{q} ({i})"},
                    {"role": "assistant", "content": " ".join([a] * (1 + i % 3))},
                ]
            }
        )
    path = work / "train.parquet"
    pq.write_table(pa.Table.from_pylist(data), path)
    return model, path


def _clock_callback() -> Any:
    """A TrainerCallback timing `train()` in wall and process CPU seconds (same on both sides)."""
    from transformers import TrainerCallback

    class _Clock(TrainerCallback):
        def __init__(self) -> None:
            self.cpu = 0.0
            self._start = 0.0

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self._start = time.process_time()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            self.cpu = time.process_time() - self._start

    return _Clock()


def _worker_kaito(args: argparse.Namespace) -> dict[str, Any]:
    from kaito_tuning.config import build_config
    from kaito_tuning.train import run

    cfg = build_config(
        {
            "ModelConfig": {"pretrained_model_name_or_path": args.model},
            "LoraConfig": {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0},
            "DatasetConfig": {"dataset_path": args.data, "shuffle_seed": 42},
            "TrainingArguments": {
                "output_dir": args.out,
                "max_steps": args.steps,
                "per_device_train_batch_size": args.batch_size,
                "learning_rate": 2e-4,
                "logging_steps": 10,
                "max_length": 1024,
                "gradient_checkpointing": True,
                "optim": "adamw_torch_fused",
            },
        },
        {"method": "lora"},
    )
    clock = _clock_callback()
    metrics = run(cfg, callbacks=(clock,)).metrics
    return {
        "tokens": metrics["tokens_seen"],
        "train_runtime": metrics["train_runtime_s"],
        "train_cpu_s": clock.cpu,
    }


def _worker_trl(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    dataset = load_dataset("parquet", data_files=args.data, split="train").shuffle(seed=42)
    clock = _clock_callback()
    trainer = SFTTrainer(
        model=model,
        callbacks=[clock],
        processing_class=tokenizer,
        train_dataset=dataset,
        peft_config=LoraConfig(
            r=8, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM"
        ),
        args=SFTConfig(
            output_dir=args.out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-4,
            logging_steps=10,
            max_length=1024,
            gradient_checkpointing=True,
            optim="adamw_torch_fused",
            save_strategy="no",
            report_to="none",
            bf16=dtype == torch.bfloat16,
            dataloader_pin_memory=cuda,
            disable_tqdm=True,
            # Only so that both sides count tokens the same way; costs one sum per step.
            include_num_input_tokens_seen="non_padding",
        ),
    )
    result = trainer.train()
    trainer.save_model(args.out)
    return {
        "tokens": trainer.state.num_input_tokens_seen,
        "train_runtime": result.metrics["train_runtime"],
        "train_cpu_s": clock.cpu,
    }


def _child(args: argparse.Namespace) -> None:
    import torch

    start = time.perf_counter()
    result = _worker_kaito(args) if args.worker == "kaito" else _worker_trl(args)
    result["wall_s"] = time.perf_counter() - start
    if torch.cuda.is_available():
        result["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
    print("RESULT " + json.dumps(result), flush=True)


def _run_child(
    kind: str, model: Path, data: Path, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--data", str(data)]
    cmd += ["--out", str(out), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    # Reap the child ourselves: wait4 gives that child's own peak RSS (KiB on Linux).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{kind} worker failed ({proc.returncode}):\n{output[-4000:]}")
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["tokens_per_s"] = result["tokens"] / result["train_runtime"]
    result["tokens_per_cpu_s"] = result["tokens"] / result["train_cpu_s"]
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, results in runs.items():
        out[kind] = {
            "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in results),
            "tokens_per_s_best": max(r["tokens_per_s"] for r in results),
            "tokens_per_s_all": [round(r["tokens_per_s"], 1) for r in results],
            "tokens_per_cpu_s_median": statistics.median(r["tokens_per_cpu_s"] for r in results),
            "tokens_per_cpu_s_all": [round(r["tokens_per_cpu_s"], 1) for r in results],
            "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in results),
            "tokens_per_run": results[0]["tokens"],
            "wall_s_median": statistics.median(r["wall_s"] for r in results),
        }
        if "peak_cuda_bytes" in results[0]:
            out[kind]["peak_cuda_mib_median"] = statistics.median(
                r["peak_cuda_bytes"] / 2**20 for r in results
            )
    for stat in ("tokens_per_s_median", "tokens_per_s_best", "tokens_per_cpu_s_median"):
        out[f"ratio_{stat}"] = out["kaito"][stat] / out["trl"][stat]
    out["peak_rss_ratio_kaito_over_trl"] = (
        out["kaito"]["peak_rss_mib_median"] / out["trl"]["peak_rss_mib_median"]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows", type=int, default=400, help="dataset rows")
    parser.add_argument("--worker", choices=("kaito", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _child(args)
        return
    with tempfile.TemporaryDirectory(prefix="kaito-bench-") as tmp:
        work = Path(tmp)
        model, data = _prepare(work, args.rows)
        runs: dict[str, list[dict[str, Any]]] = {"kaito": [], "trl": []}
        for i in range(args.rounds):
            order = ("kaito", "trl") if i % 2 == 0 else ("trl", "kaito")
            for kind in order:
                result = _run_child(kind, model, data, work / f"{kind}-{i}", args)
                runs[kind].append(result)
                print(
                    f"round {i + 1} {kind:5s}: {result['tokens_per_s']:8.1f} tokens/s "
                    f"({result['tokens_per_cpu_s']:.1f}/CPU-s), "
                    f"{result['tokens']} tokens in {result['train_runtime']:.2f}s, "
                    f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    summary = _summary(runs)
    print(json.dumps(summary, indent=2))
    print(
        "kaito/trl throughput ratio: "
        f"median wall {summary['ratio_tokens_per_s_median']:.3f}, "
        f"best wall {summary['ratio_tokens_per_s_best']:.3f}, "
        f"median per CPU-second {summary['ratio_tokens_per_cpu_s_median']:.3f}; "
        f"peak RSS ratio {summary['peak_rss_ratio_kaito_over_trl']:.3f}"
    )


if __name__ == "__main__":
    main()
