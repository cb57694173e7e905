"""The runtime image catalog: which image runs which runtime, and on which GPUs it can.

Why this exists: a plan that names a GPU the image has no kernels for crash-loops on the node
("no kernel image is available for execution on the device"). CUDA 13 builds (torch 2.13, the
workspace lock) dropped Volta, so the V100 of the quick start needs another image. What each
image supports is **measured** from its built environment (``catalog/images.measured.yaml``,
written by ``runtimes/envs.py write``), never typed by hand; the hand-written half
(``catalog/images.yaml``) says what each image is for and how it is built.

A GPU of compute capability (M, m) runs an image when every library the workload needs ships
code for it: a cubin ``sm_Mk`` with k <= m (binary compatible within a major version), an
arch-specific cubin ``sm_Mma`` of exactly that capability, or PTX ``compute_XY`` with
(X, Y) <= (M, m), which the driver compiles forward.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kaito_presets._data import load_catalog_yaml
from kaito_presets.errors import CatalogError
from kaito_presets.presets import RUNTIMES, TUNING_METHODS, Runtime, TuningMethod
from kaito_presets.skus import GpuSku

__all__ = [
    "ImageBuild",
    "RuntimeImage",
    "all_images",
    "arch_runs_on",
    "get_image",
    "inference_image_for",
    "sm_name",
    "tuning_image_for",
]

Purpose = Literal["inference", "tuning"]
_ARCH = re.compile(r"(sm|compute)_(\d+)(\d)([af]?)")
# Libraries a tuning method needs kernels from (QLoRA's 4-bit layers are bitsandbytes').
_METHOD_LIBRARIES: dict[TuningMethod, tuple[str, ...]] = {
    "lora": ("torch",),
    "qlora": ("torch", "bitsandbytes"),
}


def sm_name(compute_capability: tuple[int, int]) -> str:
    """``(7, 0)`` -> ``"sm_70"``."""
    major, minor = compute_capability
    return f"sm_{major}{minor}"


def arch_runs_on(arch: str, compute_capability: tuple[int, int]) -> bool:
    """Whether code compiled as ``arch`` (``sm_86``, ``sm_90a``, ``compute_80``) runs on a GPU
    of ``compute_capability``."""
    match = _ARCH.fullmatch(arch)
    if match is None:
        raise ValueError(f"not a CUDA architecture name: {arch!r} (expected e.g. sm_86)")
    kind, major, minor, suffix = match[1], int(match[2]), int(match[3]), match[4]
    if suffix == "a":  # arch-specific features: that exact capability only
        return (major, minor) == compute_capability
    if kind == "compute":  # PTX: the driver JIT-compiles it for the same or a newer GPU
        return (major, minor) <= compute_capability
    return major == compute_capability[0] and minor <= compute_capability[1]


class ImageBuild(BaseModel):
    """What an image's environment was measured to contain (``images.measured.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packages: dict[str, str] = Field(description="Versions of the libraries with GPU kernels.")
    cuda: str = Field(description="CUDA version torch was built with, e.g. 12.8.")
    min_driver: str = Field(description="Lowest NVIDIA driver that runs this CUDA major version.")
    kernels: dict[str, tuple[str, ...]] = Field(
        description="Architectures per library (torch's arch list) or shared object (cuobjdump)."
    )


class RuntimeImage(BaseModel):
    """One runtime image: its purpose, how it is built, and what it was measured to run on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    purpose: Purpose
    runtimes: tuple[Runtime, ...] = ()
    methods: tuple[TuningMethod, ...] = ()
    dockerfile: str
    project: str
    sync: tuple[str, ...] = ()
    libraries: tuple[str, ...] = Field(min_length=1)
    note: str
    build: ImageBuild

    @model_validator(mode="after")
    def _check(self) -> RuntimeImage:
        if self.purpose == "inference" and (not self.runtimes or self.methods):
            raise ValueError(f"{self.name}: an inference image lists runtimes and no methods")
        if self.purpose == "tuning" and (not self.methods or self.runtimes):
            raise ValueError(f"{self.name}: a tuning image lists methods and no runtimes")
        for library in self.libraries:
            if not self._files(library):
                raise ValueError(f"{self.name}: no measured kernels for {library}")
        return self

    def _files(self, library: str) -> list[str]:
        return [key for key in self.build.kernels if key.split("/", 1)[0] == library]

    def missing_kernels(
        self, compute_capability: tuple[int, int], libraries: tuple[str, ...] | None = None
    ) -> list[str]:
        """Kernel sources (library or shared object) with no code for ``compute_capability``,
        among ``libraries`` (default: all the image's)."""
        out = []
        for library in libraries or self.libraries:
            for key in self._files(library):
                archs = self.build.kernels[key]
                if not any(arch_runs_on(a, compute_capability) for a in archs):
                    out.append(key)
        return out

    def runs_on(
        self, compute_capability: tuple[int, int], libraries: tuple[str, ...] | None = None
    ) -> bool:
        """Every needed library has kernels for ``compute_capability``."""
        return not self.missing_kernels(compute_capability, libraries)

    def describe(self) -> str:
        """``kaito-inference (CUDA 13.0; torch 2.13.0+cu130, vllm 0.32.0)``."""
        versions = ", ".join(f"{k} {v}" for k, v in self.build.packages.items())
        return f"{self.name} (CUDA {self.build.cuda}; {versions})"

    def why_not(
        self, sku: GpuSku, libraries: tuple[str, ...] | None = None
    ) -> str | None:  # None: it runs
        """Why this image cannot drive ``sku``'s GPU, or None when it can."""
        cc = sku.compute_capability_tuple
        missing = self.missing_kernels(cc, libraries)
        if not missing:
            return None
        key = missing[0]
        return (
            f"{self.describe()} has no kernels for {sku.gpu_model} (compute capability "
            f"{sku.compute_capability}, {sm_name(cc)}): {key} is built for "
            f"{' '.join(self.build.kernels[key])}"
        )


def _build(declared: dict[str, Any], measured: dict[str, Any]) -> tuple[RuntimeImage, ...]:
    out: list[RuntimeImage] = []
    builds = measured.get("images") or {}
    for raw in declared.get("images") or []:
        name = raw.get("name")
        if name not in builds:
            raise CatalogError(
                f"images.measured.yaml has no entry for image {name!r}; measure it with "
                "`uv run --frozen python runtimes/envs.py write`"
            )
        try:
            out.append(RuntimeImage.model_validate({**raw, "build": builds[name]}))
        except ValidationError as err:
            raise CatalogError(f"images.yaml: bad image {name!r}: {err}") from err
    names = [image.name for image in out]
    if len(names) != len(set(names)):
        raise CatalogError(f"images.yaml: duplicate image names in {names}")
    stale = sorted(set(builds) - set(names))
    if stale:
        raise CatalogError(f"images.measured.yaml measures unknown images {stale}")
    return tuple(out)


@cache
def _catalog() -> tuple[RuntimeImage, ...]:
    return _build(load_catalog_yaml("images.yaml"), load_catalog_yaml("images.measured.yaml"))


def all_images() -> list[RuntimeImage]:
    """Every runtime image, in catalog (preference) order."""
    return list(_catalog())


def get_image(name: str) -> RuntimeImage:
    """The image called ``name``; raises ``KeyError`` naming the known ones."""
    for image in _catalog():
        if image.name == name:
            return image
    raise KeyError(f"unknown runtime image {name!r}; known: {[i.name for i in _catalog()]}")


def inference_image_for(runtime: Runtime, sku: GpuSku) -> tuple[RuntimeImage | None, list[str]]:
    """The first image serving ``runtime`` that runs on ``sku``'s GPU, and why each earlier
    one (or every one) cannot."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}")
    why: list[str] = []
    for image in _catalog():
        if runtime in image.runtimes:
            reason = image.why_not(sku)
            if reason is None:
                return image, why
            why.append(reason)
    if not why:
        why.append(f"no runtime image serves {runtime}")
    return None, why


def tuning_image_for(
    sku: GpuSku, method: TuningMethod | None = None
) -> tuple[RuntimeImage | None, list[str]]:
    """The first tuning image that runs ``method`` (None: every method it offers) on ``sku``'s
    GPU, and why each earlier one (or every one) cannot."""
    if method is not None and method not in TUNING_METHODS:
        raise ValueError(f"unknown tuning method {method!r}")
    why: list[str] = []
    for image in _catalog():
        if image.purpose != "tuning" or (method is not None and method not in image.methods):
            continue
        needs = _METHOD_LIBRARIES[method] if method else None
        reason = image.why_not(sku, needs)
        if reason is None:
            return image, why
        why.append(reason)
    if not why:
        why.append(f"no tuning image runs {method}")
    return None, why
