"""The image rule restated for the tests, from the raw catalog YAML and CUDA's documented
compatibility rules, without importing ``kaito_presets.images``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kaito_presets
import yaml

CATALOG = Path(kaito_presets.__file__).parent / "catalog"
IMAGES: list[dict[str, Any]] = yaml.safe_load((CATALOG / "images.yaml").read_text())["images"]
KERNELS: dict[str, dict[str, list[str]]] = {
    name: entry["kernels"]
    for name, entry in yaml.safe_load((CATALOG / "images.measured.yaml").read_text())[
        "images"
    ].items()
}


def code_runs(arch: str, cc: tuple[int, int]) -> bool:
    """A cubin sm_XY runs on X.Z for Z >= Y; sm_XYa only on X.Y; PTX compute_XY on X.Y and
    anything newer (the driver compiles it)."""
    kind, number = arch.split("_")
    suffix = number[-1] if number[-1] in "af" else ""
    digits = number.rstrip("af")
    version = (int(digits[:-1]), int(digits[-1]))
    if suffix == "a":
        return version == cc
    if kind == "compute":
        return version <= cc
    return version[0] == cc[0] and version[1] <= cc[1]


def image_with_kernels(names: list[str], cc: tuple[int, int]) -> str | None:
    """The first of ``names`` whose every measured kernel source has code for ``cc``."""
    for name in names:
        if all(any(code_runs(a, cc) for a in archs) for archs in KERNELS[name].values()):
            return name
    return None
