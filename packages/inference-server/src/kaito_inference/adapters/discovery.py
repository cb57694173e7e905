"""Find the peft adapters under the adapters directory (``/mnt/adapter/<name>``).

Why this exists: KAITO mounts each adapter image or volume as a sub-directory; every one that
holds ``adapter_config.json`` is served as a model named after the directory. Anything else is
skipped with a warning, so a stray file cannot stop the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from kaito_inference.backends.base import AdapterSpec

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: Path) -> bool:
    """Whether ``path`` looks like a peft adapter directory."""
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def discover_adapters(root: Path, strengths: Mapping[str, float]) -> list[AdapterSpec]:
    """Adapters under ``root``, sorted by name; strengths default to 1.0."""
    if not root.is_dir():
        logger.info("no adapters directory at %s; serving the base model only", root)
        return []
    specs: list[AdapterSpec] = []
    for child in sorted(root.iterdir()):
        if is_adapter_dir(child):
            specs.append(AdapterSpec(child.name, child, strengths.get(child.name, 1.0)))
        else:
            logger.warning("skipping %s: not a peft adapter (no %s)", child, ADAPTER_CONFIG)
    unknown = sorted(set(strengths) - {s.name for s in specs})
    if unknown:
        logger.warning("adapter_strengths names adapters that are not in %s: %s", root, unknown)
    return specs
