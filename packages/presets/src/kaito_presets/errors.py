"""Errors raised by the preset catalog, the estimator and the validators.

All of them are user errors (a wrong name or a Workspace that cannot fit): retrying will not help,
so callers map them to a rejected admission or a permanent failure condition, never a requeue.
"""

from __future__ import annotations

__all__ = ["CatalogError", "DoesNotFit", "PresetNotFound", "PresetsError", "SkuNotFound"]


class PresetsError(Exception):
    """Base class of every error raised by ``kaito_presets``."""


class CatalogError(PresetsError):
    """The packaged catalog YAML is malformed (a bug in this package, not in user input)."""


class PresetNotFound(PresetsError, LookupError):
    """No preset has this name, legacy alias or Hugging Face id."""

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        msg = f"unknown preset {name!r}"
        if self.suggestions:
            msg += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        super().__init__(msg)


class SkuNotFound(PresetsError, LookupError):
    """No GPU SKU in the catalog has this instance type name."""

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        msg = f"unknown GPU instance type {name!r}"
        if self.suggestions:
            msg += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        super().__init__(msg)


class DoesNotFit(PresetsError):
    """A preset cannot be served (or tuned) on a SKU, or on any SKU.

    Attributes:
        required_gib: GPU memory needed per GPU for the smallest layout tried, in GiB.
        available_gib: usable GPU memory per GPU on the SKU, in GiB (0 when no SKU was given).
        suggestions: names of catalog SKUs on which the preset does fit, cheapest first.
        reasons: why each runtime/dtype was ruled out, in the order they were tried.
        gpu_unsupported: no runtime image has kernels for the SKU's GPU (memory was never the
            question).
    """

    def __init__(
        self,
        message: str,
        *,
        required_gib: float = 0.0,
        available_gib: float = 0.0,
        suggestions: list[str] | None = None,
        reasons: list[str] | None = None,
        gpu_unsupported: bool = False,
    ) -> None:
        self.gpu_unsupported = gpu_unsupported
        self.required_gib = required_gib
        self.available_gib = available_gib
        self.suggestions = suggestions or []
        self.reasons = reasons or []
        super().__init__(message)
