"""User-facing failures of the tuning job and how they leave the process.

Pure code raises one of the `TuningError` subclasses below; only the command-line boundary
(`report_failure`) turns them into an exit code, a log line and the container's termination
message, which Kubernetes copies into the pod status so the controller can show it on the
Workspace. Every message says what was being done, names the thing at fault and, where there
is one, what the user can do about it.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
# Kubernetes keeps at most 4096 bytes of a termination message; keep the end, which holds the hint.
TERMINATION_MESSAGE_LIMIT = 4096

EXIT_UNEXPECTED = 1


class TuningError(Exception):
    """Base class: a failure the user can act on. `exit_code` is stable API for the controller."""

    exit_code = 10
    reason = "TuningFailed"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(TuningError):
    """The tuning configuration (file or flags) is invalid. Never retried."""

    exit_code = 2
    reason = "InvalidTuningConfig"


class DataError(TuningError):
    """The dataset cannot be used: missing column, empty, malformed rows, samples too long."""

    exit_code = 3
    reason = "InvalidDataset"


class InputFetchError(TuningError):
    """The input data (URL, image or volume) could not be fetched or failed its checks."""

    exit_code = 4
    reason = "InputUnavailable"


class OutOfMemoryError(TuningError):
    """The accelerator ran out of memory while loading or training."""

    exit_code = 5
    reason = "OutOfGPUMemory"


class RegistryAuthError(TuningError):
    """The registry rejected the push credentials (or none were found for it)."""

    exit_code = 6
    reason = "RegistryAuthFailed"


class RegistryError(TuningError):
    """Pushing or pulling the adapter image failed for a reason other than credentials."""

    exit_code = 7
    reason = "RegistryError"


class ModelLoadError(TuningError):
    """The base model or its tokenizer could not be loaded."""

    exit_code = 8
    reason = "ModelLoadFailed"


def oom_error(what: str, *, batch_size: int | None) -> OutOfMemoryError:
    """Build the out-of-memory error with the advice that usually fixes it."""
    batch = f" (per_device_train_batch_size={batch_size})" if batch_size is not None else ""
    return OutOfMemoryError(
        f"{what}: out of GPU memory{batch}",
        hint=(
            "lower TrainingArguments.per_device_train_batch_size (raise "
            "gradient_accumulation_steps to keep the effective batch), lower "
            "TrainingArguments.max_length, enable gradient_checkpointing, use method qlora, "
            "or pick an instance type with more GPU memory"
        ),
    )


def termination_message(err: BaseException) -> str:
    """The termination-log text: reason, then the message, capped to the Kubernetes limit."""
    if isinstance(err, TuningError):
        text = f"{err.reason}: {err}"
    else:
        text = f"UnexpectedError: {type(err).__name__}: {err}"
    data = text.encode()
    if len(data) > TERMINATION_MESSAGE_LIMIT:
        data = b"..." + data[-(TERMINATION_MESSAGE_LIMIT - 3) :]
    return data.decode(errors="ignore")


def exit_code_for(err: BaseException) -> int:
    """The process exit code for an error (stable: the controller may map it to a reason)."""
    return err.exit_code if isinstance(err, TuningError) else EXIT_UNEXPECTED


def as_user_error(err: BaseException) -> BaseException:
    """Give a torch out-of-memory error that escaped the training code the usual advice."""
    kind = type(err)
    if kind.__name__ == "OutOfMemoryError" and kind.__module__.startswith("torch"):
        return oom_error("running the tuning job", batch_size=None)
    return err


def report_failure(err: BaseException, termination_log: Path | None) -> int:
    """Log the failure, write the termination message (best effort) and return the exit code."""
    err = as_user_error(err)
    message = termination_message(err)
    if isinstance(err, TuningError):
        logger.error("%s", message)
    else:
        logger.exception("unexpected failure", exc_info=err)
    if termination_log is not None:
        try:
            termination_log.write_text(message)
        except OSError as write_err:
            logger.warning("could not write termination log %s: %s", termination_log, write_err)
    return exit_code_for(err)
