"""The ``kaito.sh/runtime`` annotation, parsed once.

Why: the webhook, the sizing and the manifests all need to know which runtime a Workspace asks
for; when each read the annotation itself, a value the webhook accepted after normalising
(``Transformers``, ``" vllm "``, ``""``) reached the controller raw and failed sizing there.
Everyone downstream calls :func:`runtime_of` (or :func:`parse_runtime`) and uses its answer.
"""

from __future__ import annotations

from kaito_api.labels import ANNOTATION_RUNTIME, RUNTIME_TRANSFORMERS, RUNTIME_VLLM
from kaito_api.v1beta1 import Workspace

from kaito_presets.presets import Runtime

__all__ = ["RUNTIME_FIELD", "parse_runtime", "runtime_of"]

RUNTIME_FIELD = f"metadata.annotations[{ANNOTATION_RUNTIME}]"
_RUNTIMES: dict[str, Runtime] = {RUNTIME_VLLM: "vllm", RUNTIME_TRANSFORMERS: "transformers"}


def parse_runtime(value: str | None) -> Runtime | None:
    """The runtime an annotation value names, or None (absent or blank: vLLM, with fallback).

    Case and surrounding blanks do not matter (``" Transformers "`` is transformers).

    Raises:
        ValueError: the value names no runtime; the message names the annotation.
    """
    if value is None or not value.strip():
        return None
    runtime = _RUNTIMES.get(value.strip().lower())
    if runtime is None:
        raise ValueError(
            f"{value!r} is not a runtime; use {RUNTIME_VLLM} or {RUNTIME_TRANSFORMERS} "
            f"(annotation {ANNOTATION_RUNTIME})"
        )
    return runtime


def runtime_of(ws: Workspace) -> Runtime | None:
    """The runtime the Workspace's ``kaito.sh/runtime`` annotation forces (see parse_runtime)."""
    return parse_runtime((ws.metadata.annotations or {}).get(ANNOTATION_RUNTIME))
