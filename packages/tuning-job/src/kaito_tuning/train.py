"""One tuning run: load, wrap with LoRA, train with TRL, save the adapter next to its metrics.

Thin on purpose: every decision lives in a pure module (config, quantization, lora, data) and
this file wires the libraries together in KAITO's order: tokenizer, data (so a bad dataset
fails before the expensive model load), base model (4-bit for qlora), PEFT wrapper, TRL
SFTTrainer, then `adapter_config.json`, `adapter_model.safetensors`, tokenizer files,
`metrics.json`, `loss_curve.csv` and the `fine_tuning_completed.txt` sentinel in the output
directory. Out-of-memory and load failures become errors that tell the user what to change.
"""

from __future__ import annotations

import logging
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaito_tuning.config import ModelSection, TuningConfig
from kaito_tuning.data import build_datasets, resolve_data_files
from kaito_tuning.errors import ConfigError, ModelLoadError, oom_error
from kaito_tuning.lora import build_lora_config, check_target_modules, target_modules_for
from kaito_tuning.progress import ProgressCallback
from kaito_tuning.quantization import build_bnb_config, resolve_dtype, torch_dtype

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase
    from trl.trainer.sft_config import SFTConfig

logger = logging.getLogger(__name__)

SENTINEL_FILE = "fine_tuning_completed.txt"


@dataclass
class TrainOutcome:
    """What a finished run produced."""

    output_dir: Path
    metrics: dict[str, Any]
    model: PeftModel


def load_tokenizer(section: ModelSection) -> PreTrainedTokenizerBase:
    """The base model's tokenizer, with a pad token and the configured chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            section.pretrained_model_name_or_path,
            local_files_only=section.local_files_only,
            revision=section.revision,
            trust_remote_code=section.trust_remote_code,
            cache_dir=section.cache_dir,
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"loading the tokenizer from {section.pretrained_model_name_or_path}: {err}",
            hint="check the model weights were downloaded to this path (ModelConfig / --model)",
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if section.chat_template:
        template_path = Path(section.chat_template)
        is_file = len(section.chat_template) < 4096 and template_path.is_file()
        tokenizer.chat_template = template_path.read_text() if is_file else section.chat_template
    return tokenizer


def mixed_precision(cfg: TuningConfig, *, dtype: str, cuda: bool) -> tuple[bool, bool]:
    """(bf16, fp16) for the trainer: as configured, else following the resolved weight dtype."""
    t = cfg.training
    bf16 = t.bf16 if t.bf16 is not None else (cuda and dtype == "bfloat16")
    fp16 = t.fp16 if t.fp16 is not None else (cuda and dtype == "float16")
    return bf16, fp16


def build_sft_config(cfg: TuningConfig, *, dtype: str, cuda: bool, has_eval: bool) -> SFTConfig:
    """TRL's SFTConfig from the TrainingArguments section and the resolved precision."""
    from trl.trainer.sft_config import SFTConfig

    t = cfg.training
    bf16, fp16 = mixed_precision(cfg, dtype=dtype, cuda=cuda)
    # Every TrainingArguments key is an SFTConfig field of the same name (a unit test holds the
    # section to that), so the section is forwarded whole; only what is resolved here differs.
    return SFTConfig(
        **t.sft_kwargs(),
        bf16=bf16,
        fp16=fp16,
        eval_strategy=t.eval_strategy if has_eval else "no",
        logging_first_step=True,
        dataloader_pin_memory=cuda,
        pad_to_multiple_of=cfg.collator.pad_to_multiple_of,
        # Our own progress lines replace tqdm bars, which are unreadable in `kubectl logs`.
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )


def _load_model(cfg: TuningConfig, dtype: str, cuda: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    section = cfg.model
    bnb = build_bnb_config(cfg, compute_dtype=dtype if dtype != "float32" else None)
    if bnb is not None and not cuda:
        raise ConfigError(
            "method 'qlora' needs a CUDA GPU (bitsandbytes 4-bit); none is visible",
            hint="use method lora on CPU, or schedule the job on a GPU node",
        )
    try:
        return AutoModelForCausalLM.from_pretrained(
            section.pretrained_model_name_or_path,
            dtype=torch_dtype(dtype),
            quantization_config=bnb,
            device_map=section.device_map if cuda else None,
            local_files_only=section.local_files_only,
            revision=section.revision,
            trust_remote_code=section.trust_remote_code,
            attn_implementation=section.attn_implementation,
            cache_dir=section.cache_dir,
        )
    except torch.OutOfMemoryError as err:
        raise oom_error("loading the base model", batch_size=None) from err
    except ImportError as err:
        raise ConfigError(
            f"method '{cfg.method}' cannot load the model: {err}",
            hint="qlora needs bitsandbytes: use the kaito-tuning image or kaito-tuning[qlora]",
        ) from err
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"loading the base model from {section.pretrained_model_name_or_path}: {err}",
            hint="check the model weights were downloaded to this path (ModelConfig / --model)",
        ) from err


def _wrap_with_lora(cfg: TuningConfig, model: Any) -> PeftModel:
    from peft import get_peft_model, prepare_model_for_kbit_training

    arch = str(getattr(model.config, "model_type", ""))
    targets = target_modules_for(cfg, arch)
    check_target_modules(targets, (name for name, _ in model.named_modules()))
    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.training.gradient_checkpointing
        )
    model.config.use_cache = False
    peft_model = get_peft_model(model, build_lora_config(cfg, arch))
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA on %s (%s): r=%d, targets %s, %d of %d parameters trainable (%.3f%%)",
        arch or "unknown architecture",
        cfg.method,
        cfg.lora.r,
        targets,
        trainable,
        total,
        100 * trainable / max(total, 1),
    )
    return peft_model


def _peak_memory(cuda: bool) -> dict[str, int]:
    import torch

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    peaks = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale}
    if cuda:
        peaks["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    return peaks


def _write_results(
    output_dir: Path, progress: ProgressCallback, extra: dict[str, Any]
) -> dict[str, Any]:
    """Metrics and loss curve next to the adapter, then KAITO's completion sentinel."""
    metrics = progress.write(output_dir, extra)
    (output_dir / SENTINEL_FILE).write_text(
        f"Fine-Tuning completed at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
    )
    logger.info(
        "adapter written to %s: %d steps, final loss %s, %.0f tokens/s",
        output_dir,
        metrics["steps"],
        metrics["final_loss"],
        metrics["tokens_per_second"],
    )
    return metrics


def run(cfg: TuningConfig, *, callbacks: tuple[Any, ...] = ()) -> TrainOutcome:
    """Train one adapter as configured and write it to `TrainingArguments.output_dir`."""
    import datasets
    import torch
    import transformers
    from transformers import PrinterCallback
    from trl.trainer.sft_trainer import SFTTrainer

    # Progress bars and the trainer's raw log dicts are noise in `kubectl logs`; ProgressCallback
    # prints one readable line per logging step instead (PrinterCallback is removed below).
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    output_dir = Path(cfg.training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    dtype = resolve_dtype(
        cfg.model.torch_dtype, cuda=cuda, bf16_supported=cuda and torch.cuda.is_bf16_supported()
    )
    if dtype != cfg.model.torch_dtype:
        logger.info("using %s instead of %s on this device", dtype, cfg.model.torch_dtype)
    if cfg.collator.mlm:
        logger.info("DataCollator.mlm is ignored: causal language models train without masking")
    tokenizer = load_tokenizer(cfg.model)
    with tempfile.TemporaryDirectory(prefix="kaito-data-") as download_dir:
        files = resolve_data_files(cfg.dataset.dataset_path, download_dir=Path(download_dir))
        train_ds, eval_ds, report = build_datasets(
            cfg.dataset, files, tokenizer, max_length=cfg.training.max_length
        )
    model = _wrap_with_lora(cfg, _load_model(cfg, dtype, cuda))  # after the data: fail fast
    progress = ProgressCallback()
    trainer = SFTTrainer(
        model=model,
        args=build_sft_config(cfg, dtype=dtype, cuda=cuda, has_eval=eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[progress, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    try:
        trainer.train()
        evaluation = trainer.evaluate() if eval_ds is not None else {}
    except torch.OutOfMemoryError as err:
        batch = cfg.training.per_device_train_batch_size
        raise oom_error("training", batch_size=batch) from err
    model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    extra = {
        "method": cfg.method,
        "base_model": cfg.model.pretrained_model_name_or_path,
        "dtype": dtype,
        "samples": len(train_ds),
        "eval_samples": len(eval_ds) if eval_ds is not None else 0,
        "samples_over_max_length": report.over_limit,
        "samples_dropped": report.dropped,
        "eval_loss": evaluation.get("eval_loss"),
        **_peak_memory(cuda),
    }
    metrics = _write_results(output_dir, progress, extra)
    return TrainOutcome(output_dir=output_dir, metrics=metrics, model=model)
