"""`kaito-tune`: the tuning job's command line (train, then optionally push; or push alone).

    kaito-tune --config FILE --model PATH_OR_ID --method lora|qlora --data PATH_OR_URL --output DIR
               [--set Section.key=value ...] [--push-image REF --docker-config FILE]
    kaito-tune push --dir DIR --image REF --docker-config FILE

Flags override the file, which overrides the defaults. Any failure ends the process with the
exit code of its error class and writes the message to the termination log, which Kubernetes
shows in the pod status (`terminationMessagePath`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaito_tuning._logging import configure_logging
from kaito_tuning.config import (
    DEFAULT_CONFIG_PATH,
    TuningConfig,
    deep_merge,
    load_config,
    parse_set_override,
)
from kaito_tuning.errors import DEFAULT_TERMINATION_LOG, ConfigError, report_failure

logger = logging.getLogger(__name__)

# flag dest -> (section, key) in the KAITO layout
_FLAG_TARGETS: dict[str, tuple[str, str]] = {
    "model": ("ModelConfig", "pretrained_model_name_or_path"),
    "data": ("DatasetConfig", "dataset_path"),
    "output": ("TrainingArguments", "output_dir"),
    "max_steps": ("TrainingArguments", "max_steps"),
    "epochs": ("TrainingArguments", "num_train_epochs"),
    "batch_size": ("TrainingArguments", "per_device_train_batch_size"),
    "learning_rate": ("TrainingArguments", "learning_rate"),
    "max_length": ("TrainingArguments", "max_length"),
}


def _add_push_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-config",
        type=Path,
        default=None,
        help="dockerconfigjson with registry credentials (the imagePushSecret)",
    )
    parser.add_argument("--plain-http", action="store_true", help="talk to the registry over http")
    parser.add_argument(
        "--model-name", help="base model name for the sh.kaito.model.name annotation"
    )
    parser.add_argument("--termination-log", type=Path, default=DEFAULT_TERMINATION_LOG)
    parser.add_argument("--log-level", default="INFO")


def train_parser() -> argparse.ArgumentParser:
    """Flags of the training command."""
    parser = argparse.ArgumentParser(
        prog="kaito-tune",
        description="Tune a LoRA/QLoRA adapter. Subcommand: `kaito-tune push --help`.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"training_config.yaml (default: {DEFAULT_CONFIG_PATH} when it exists)",
    )
    parser.add_argument("--model", help="base model directory or id")
    parser.add_argument("--method", choices=("lora", "qlora"))
    parser.add_argument("--data", help="dataset file, directory or http(s) URL")
    parser.add_argument("--output", help="directory for the adapter and metrics")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--max-length", type=int)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config key, e.g. LoraConfig.r=16 (repeatable)",
    )
    parser.add_argument("--push-image", metavar="REF", help="push the output dir to this image")
    _add_push_flags(parser)
    return parser


def push_parser() -> argparse.ArgumentParser:
    """Flags of the push command."""
    parser = argparse.ArgumentParser(
        prog="kaito-tune push", description="Push an adapter directory as an OCI artifact."
    )
    parser.add_argument("--dir", type=Path, required=True, help="adapter directory")
    parser.add_argument("--image", required=True, help="target reference, e.g. reg/repo:tag")
    _add_push_flags(parser)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The nested override mapping the flags stand for (`--set` applied last)."""
    overrides: dict[str, Any] = {}
    if args.method:
        overrides["method"] = args.method
    for dest, (section, key) in _FLAG_TARGETS.items():
        value = getattr(args, dest)
        if value is not None:
            overrides = deep_merge(overrides, {section: {key: value}})
    for item in args.set:
        overrides = deep_merge(overrides, parse_set_override(item))
    return overrides


def config_from_args(args: argparse.Namespace) -> TuningConfig:
    """Layer defaults < YAML < flags into the validated configuration."""
    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    if path is not None and not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    logger.info("configuration: %s", path or "defaults")
    return load_config(path, overrides_from_args(args))


def _push(directory: Path, reference: str, args: argparse.Namespace) -> None:
    from kaito_tuning.push import MODEL_NAME_ANNOTATION, push_directory

    annotations = {MODEL_NAME_ANNOTATION: args.model_name} if args.model_name else None
    result = push_directory(
        directory,
        reference,
        docker_config=args.docker_config,
        plain_http=args.plain_http,
        annotations=annotations,
    )
    print(f"pushed {result.reference}@{result.digest}", flush=True)


def _train(args: argparse.Namespace) -> None:
    from kaito_tuning.train import run

    cfg = config_from_args(args)
    logger.info(
        "%s tuning of %s on %s -> %s",
        cfg.method,
        cfg.model.pretrained_model_name_or_path,
        cfg.dataset.dataset_path or "/mnt/data",
        cfg.training.output_dir,
    )
    logger.info("effective configuration: %s", cfg.model_dump_json(by_alias=True))
    if args.push_image:
        from kaito_tuning.push import check_push_access

        check_push_access(
            args.push_image, docker_config=args.docker_config, plain_http=args.plain_http
        )
    outcome = run(cfg)
    if args.push_image:
        _push(outcome.output_dir, args.push_image, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `kaito-tune`; returns the process exit code."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    is_push = bool(argv) and argv[0] == "push"
    args = push_parser().parse_args(argv[1:]) if is_push else train_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        if is_push:
            _push(args.dir, args.image, args)
        else:
            _train(args)
    except Exception as err:  # process boundary: every failure becomes an exit code
        return report_failure(err, args.termination_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
