"""GPU partitions (``resource.partition``): which MIG profiles exist, on which GPUs, and the
GPU shape a Workspace is sized against when it uses a part of a node.

Why: a partition changes what the estimator plans for and what the workload requests. A MIG
slice is one small GPU (its profile names the memory: ``2g.24gb`` is 24 GB) requested as the
extended resource ``nvidia.com/mig-<profile>``; an accelerator partition is ``count`` whole
GPUs of the node. Admission checks what it can without the nodes (the profile is a real NVIDIA
profile, the model's weights fit the slice, as KAITO checks); the controller, which reads the
nodes' GPU labels, checks the rest (the profile exists on the nodes' GPU, ``count`` is not more
than they have) and sizes the plan with :func:`partition_sku`. The profile table follows
NVIDIA's MIG user guide ("Supported MIG profiles"), the same set KAITO v0.12 accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kaito_presets.skus import GpuSku

__all__ = [
    "MIG_PROFILES",
    "MIG_RESOURCE_PREFIX",
    "MigProfile",
    "PartitionProblem",
    "mig_profile",
    "mig_resource_name",
    "partition_sku",
]

MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
_PROFILE = re.compile(r"^(\d+)g\.(\d+(?:\.\d+)?)gb$")

# Full-GPU memory (GB, as NVIDIA names the GPU) -> the MIG profiles of that GPU.
_BY_GPU: dict[int, tuple[str, ...]] = {
    24: ("1g.6gb", "2g.12gb", "4g.24gb"),  # A30
    40: ("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),  # A100 40GB
    80: ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),  # A100/H100 80GB
    94: ("1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),  # H100 NVL 94GB
    96: ("1g.12gb", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),  # GH200 96GB
    141: ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),  # H200
    180: ("1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),  # B200
}
# GPU models (GpuSku.gpu_model / the product label) that have MIG at all.
_MIG_GPU_MODELS = ("A30", "A100", "H100", "H200", "GH200", "B200")


@dataclass(frozen=True)
class MigProfile:
    """One MIG profile: ``slices`` compute slices and ``memory_gb`` of memory, available on
    GPUs with ``gpu_memory_gb`` of memory."""

    name: str
    slices: int
    memory_gb: float
    gpu_memory_gb: tuple[int, ...]

    @property
    def memory_gib(self) -> float:
        """The slice's memory as the estimator counts it (KAITO: the profile's GB as GiB)."""
        return float(int(self.memory_gb))


def _table() -> dict[str, MigProfile]:
    out: dict[str, MigProfile] = {}
    for gpu_gb, names in _BY_GPU.items():
        for name in names:
            match = _PROFILE.match(name)
            assert match, name
            have = out.get(name)
            gpus = (*have.gpu_memory_gb, gpu_gb) if have else (gpu_gb,)
            out[name] = MigProfile(name, int(match.group(1)), float(match.group(2)), gpus)
    return out


MIG_PROFILES: dict[str, MigProfile] = _table()


class PartitionProblem(ValueError):
    """The partition does not work here; ``field`` is the Workspace field to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def mig_profile(name: str) -> MigProfile:
    """The MIG profile ``name``.

    Raises:
        PartitionProblem: not an NVIDIA MIG profile (on ``resource.partition.profile``).
    """
    profile = MIG_PROFILES.get(name)
    if profile is None:
        raise PartitionProblem(
            "resource.partition.profile",
            f"unknown MIG profile {name!r}; NVIDIA's profiles are "
            + ", ".join(sorted(MIG_PROFILES)),
        )
    return profile


def mig_resource_name(profile: str) -> str:
    """The extended resource the NVIDIA device plugin (mixed strategy) advertises for
    ``profile``: ``nvidia.com/mig-1g.10gb``."""
    return MIG_RESOURCE_PREFIX + profile


def _gpu_memory_class(sku: GpuSku) -> int | None:
    """The full-GPU memory class (GB) of ``sku``'s GPU nearest to its reported memory, within
    8%; None when no MIG GPU has that much memory."""
    gb = sku.gpu_memory_mib / 1024  # NVIDIA's "80GB" A100 reports 81920 MiB: GB here is GiB
    best = min(_BY_GPU, key=lambda c: abs(c - gb))
    return best if abs(best - gb) <= 0.08 * best else None


def partition_sku(
    sku: GpuSku, *, mode: str, profile: str | None = None, count: int | None = None
) -> GpuSku:
    """The GPU shape to size a Workspace against when it uses a partition of ``sku``'s node:
    one GPU of the slice's memory (``mig``), or ``count`` of the node's GPUs (``accelerator``).

    Raises:
        PartitionProblem: the profile does not exist on this GPU, or ``count`` exceeds the
            node's GPUs; naming the field.
    """
    if mode == "mig":
        mig = mig_profile(profile or "")
        if not any(m in sku.gpu_model.upper() for m in _MIG_GPU_MODELS):
            raise PartitionProblem(
                "resource.partition.mode",
                f"the selected nodes' GPU ({sku.gpu_product}) has no MIG; MIG needs an A30, "
                "A100, H100, H200 or B200",
            )
        gpu_class = _gpu_memory_class(sku)
        if gpu_class not in mig.gpu_memory_gb:
            available = ", ".join(_BY_GPU.get(gpu_class, ())) if gpu_class else "none"
            raise PartitionProblem(
                "resource.partition.profile",
                f"MIG profile {mig.name} does not exist on the selected nodes' GPU "
                f"({sku.gpu_product}, {sku.gpu_memory_mib} MiB); its profiles: {available}",
            )
        mib = int(mig.memory_gib * 1024)
        return sku.model_copy(
            update={
                "name": f"{sku.name}-mig-{mig.name}",
                "gpu_count": 1,
                "gpu_memory_mib": mib,
                "gpu_memory_gib": mig.memory_gib,
            }
        )
    if mode == "accelerator":
        want = count or 0
        if want > sku.gpu_count:
            raise PartitionProblem(
                "resource.partition.count",
                f"{want} GPUs exceed the {sku.gpu_count} GPU(s) of each selected node "
                f"({sku.gpu_product}); lower resource.partition.count",
            )
        return sku.model_copy(update={"name": f"{sku.name}-{want}gpu", "gpu_count": want})
    raise PartitionProblem("resource.partition.mode", f"{mode!r} is not mig or accelerator")
