"""The GPU SKU catalog: which cloud VM sizes exist and what GPUs they carry.

The data lives in ``catalog/skus.yaml``; this module turns it into :class:`GpuSku` objects and
looks them up by instance type name (case-insensitively, as KAITO does). Unlike KAITO, GPU memory
is kept **per GPU** (``gpu_memory_gib``/``gpu_memory_mib``) with the GPU count beside it, so no
caller has to divide a node total again, and older GPUs (V100, T4, K80) stay in the table with
their compute capability so the estimator can explain what they can run instead of rejecting
them as "unsupported".
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kaito_presets._data import load_catalog_yaml
from kaito_presets.errors import CatalogError, SkuNotFound

__all__ = ["Cloud", "GpuSku", "all_skus", "find_sku", "get_sku", "parse_compute_capability"]

Cloud = Literal["azure", "aws"]
Interconnect = Literal["pcie", "nvlink", "nvswitch"]


def parse_compute_capability(value: str) -> tuple[int, int]:
    """Turn ``"8.6"`` into ``(8, 6)``; raises ``ValueError`` on anything else."""
    major, sep, minor = value.partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise ValueError(f"compute capability must look like '8.6', got {value!r}")
    return int(major), int(minor)


class GpuSku(BaseModel):
    """One VM size with NVIDIA GPUs. All GPU memory figures are per GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Instance type, e.g. Standard_NC6s_v3 or g5.xlarge.")
    cloud: Cloud
    family: str = Field(description="Cloud family, e.g. NCv3, NCasT4_v3, g5.")
    gpu_model: str = Field(description="Short GPU model, e.g. V100, A100, H100.")
    gpu_product: str = Field(description="nvidia.com/gpu.product label value as GFD writes it.")
    gpu_count: int = Field(ge=1)
    gpu_memory_gib: float = Field(gt=0, description="Marketed memory per GPU in GiB.")
    gpu_memory_mib: int = Field(gt=0, description="Driver-reported memory per GPU in MiB.")
    compute_capability: str = Field(description='CUDA compute capability, e.g. "7.0".')
    supports_bf16: bool
    cpu: int = Field(ge=1, description="vCPUs.")
    memory_gib: float = Field(gt=0, description="Host memory in GiB.")
    price_per_hour_usd: float = Field(
        gt=0, description="Approximate list price; only used to rank SKUs by cost."
    )
    interconnect: Interconnect = "pcie"
    infiniband: bool = False
    retired: bool = Field(default=False, description="No longer orderable; never suggested.")
    local_disk_gib: int | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> GpuSku:
        cc = parse_compute_capability(self.compute_capability)
        if self.supports_bf16 != (cc >= (8, 0)):
            raise ValueError(
                f"{self.name}: supports_bf16={self.supports_bf16} contradicts compute capability "
                f"{self.compute_capability} (bf16 needs >= 8.0)"
            )
        marketed_mib = self.gpu_memory_gib * 1024
        if not 0.9 * marketed_mib <= self.gpu_memory_mib <= marketed_mib:
            raise ValueError(
                f"{self.name}: reported {self.gpu_memory_mib} MiB is not within 90-100% of the "
                f"marketed {self.gpu_memory_gib} GiB"
            )
        return self

    @property
    def usable_gpu_memory_gib(self) -> float:
        """Memory per GPU that CUDA can allocate from: the driver-reported total, in GiB."""
        return self.gpu_memory_mib / 1024

    @property
    def total_gpu_memory_gib(self) -> float:
        """Driver-reported GPU memory of the whole node, in GiB."""
        return self.usable_gpu_memory_gib * self.gpu_count

    @property
    def compute_capability_tuple(self) -> tuple[int, int]:
        """Compute capability as a comparable ``(major, minor)`` tuple."""
        return parse_compute_capability(self.compute_capability)


def _build_skus(data: dict[str, Any]) -> tuple[GpuSku, ...]:
    gpus: dict[str, dict[str, Any]] = data.get("gpus") or {}
    out: list[GpuSku] = []
    seen: set[str] = set()
    for raw in data.get("skus") or []:
        entry = dict(raw)
        gpu_key = entry.pop("gpu", None)
        if gpu_key not in gpus:
            name = entry.get("name")
            raise CatalogError(f"skus.yaml: SKU {name!r} names unknown gpu {gpu_key!r}")
        gpu = gpus[gpu_key]
        try:
            sku = GpuSku(
                gpu_model=gpu["model"],
                gpu_product=gpu["product"],
                gpu_memory_gib=gpu["memory_gib"],
                gpu_memory_mib=gpu["memory_mib"],
                compute_capability=gpu["compute_capability"],
                supports_bf16=gpu["bf16"],
                **entry,
            )
        except (ValidationError, KeyError) as err:
            raise CatalogError(f"skus.yaml: bad SKU {entry.get('name')!r}: {err}") from err
        if sku.name.lower() in seen:
            raise CatalogError(f"skus.yaml: duplicate SKU {sku.name!r}")
        seen.add(sku.name.lower())
        out.append(sku)
    return tuple(out)


@cache
def _catalog() -> dict[str, GpuSku]:
    return {s.name.lower(): s for s in _build_skus(load_catalog_yaml("skus.yaml"))}


def all_skus(cloud: Cloud | None = None, *, include_retired: bool = True) -> list[GpuSku]:
    """Every SKU in the catalog (optionally one cloud's, optionally without retired sizes)."""
    return [
        s
        for s in _catalog().values()
        if (cloud is None or s.cloud == cloud) and (include_retired or not s.retired)
    ]


def find_sku(name: str) -> GpuSku | None:
    """The SKU called ``name`` (case-insensitive), or ``None``."""
    return _catalog().get(name.strip().lower())


def get_sku(name: str) -> GpuSku:
    """The SKU called ``name`` (case-insensitive); raises :class:`SkuNotFound` with suggestions."""
    sku = find_sku(name)
    if sku is None:
        names = [s.name for s in _catalog().values()]
        by_lower = {n.lower(): n for n in names}
        close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=3, cutoff=0.6)
        raise SkuNotFound(name, [by_lower[c] for c in close])
    return sku
