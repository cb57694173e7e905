"""Reads the YAML files packaged under ``catalog/`` (the only I/O in this package).

Kept apart so that the models and the estimator stay pure and tests can build catalogs in memory.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from kaito_presets.errors import CatalogError

__all__ = ["load_catalog_yaml"]


def load_catalog_yaml(filename: str) -> dict[str, Any]:
    """Parse ``kaito_presets/catalog/<filename>`` and return its top-level mapping."""
    text = resources.files("kaito_presets").joinpath("catalog", filename).read_text("utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise CatalogError(f"reading catalog/{filename}: top level must be a mapping")
    return data
