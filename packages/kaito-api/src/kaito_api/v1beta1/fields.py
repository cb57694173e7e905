"""Constrained strings of the Workspace spec, each with a fix-it message and a CRD pattern.

The generic Kubernetes syntaxes (names, labels, images) are in :mod:`kaito_api.types`; these are
the Workspace-specific ones.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, LiteralString

from pydantic import AfterValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["STRENGTH_PATTERN", "InstanceType", "PresetName", "Schemaless", "Strength", "Url"]

# Schemaless parts (PodTemplateSpec, VolumeSource) stay plain dicts; the CRD preserves them.
Schemaless = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, mode="validation"
    ),
]

_INSTANCE_TYPE_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9_.]*$"
_PRESET_NAME_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9_./]*$"
# "0", "0.25", "1", "1.0": a decimal number between 0 and 1 inclusive.
STRENGTH_PATTERN = r"^(0(\.[0-9]+)?|1(\.0+)?)$"
_URL_PATTERN = r"^https?://[^\s/?#]+([/?#][^\s]*)?$"


def _matches(pattern: str, code: LiteralString, what: str) -> AfterValidator:
    """A validator that rejects values not matching ``pattern`` with "<value> is not <what>"."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise PydanticCustomError(
                code, "'{value}' is not {what}", {"value": value, "what": what}
            )
        return value

    return AfterValidator(check)


InstanceType = Annotated[
    str,
    _matches(
        _INSTANCE_TYPE_PATTERN,
        "instance_type",
        "a valid instance type: use the cloud's VM size name, e.g. 'Standard_NC6s_v3'",
    ),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": 128, "pattern": _INSTANCE_TYPE_PATTERN},
        mode="validation",
    ),
]
PresetName = Annotated[
    str,
    _matches(
        _PRESET_NAME_PATTERN,
        "preset_name",
        "a valid preset name: use a catalog name such as 'phi-3-mini-4k-instruct' or a "
        "Hugging Face id such as 'microsoft/Phi-3-mini-4k-instruct'",
    ),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _PRESET_NAME_PATTERN},
        mode="validation",
    ),
]
Strength = Annotated[
    str,
    _matches(
        STRENGTH_PATTERN,
        "strength",
        'a valid strength: use a decimal number between 0 and 1 as a string, e.g. "1.0"',
    ),
    WithJsonSchema(
        {"type": "string", "maxLength": 32, "pattern": STRENGTH_PATTERN}, mode="validation"
    ),
]
Url = Annotated[
    str,
    _matches(
        _URL_PATTERN,
        "url",
        "a valid URL: use an http:// or https:// URL with a host",
    ),
    WithJsonSchema(
        {"type": "string", "maxLength": 2048, "pattern": _URL_PATTERN}, mode="validation"
    ),
]
