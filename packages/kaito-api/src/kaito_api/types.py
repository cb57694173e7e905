"""Constrained string types shared by the Workspace and NodeClaim models.

Kubernetes names, image references, quantities and timestamps each have one syntax, checked in
two places: by pydantic (with a message that says how to fix the value) and by the API server
(through the ``pattern``/``maxLength`` that the CRD generator copies from the JSON schema). Keeping
the regular expression and the bound next to each other here stops the two from drifting.
All patterns are RE2-compatible (no look-arounds) because the API server evaluates them in Go.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = [
    "DNS_LABEL_PATTERN",
    "DNS_SUBDOMAIN_PATTERN",
    "IMAGE_REFERENCE_PATTERN",
    "LABEL_KEY_PATTERN",
    "LABEL_VALUE_PATTERN",
    "QUALIFIED_NAME_PATTERN",
    "QUANTITY_PATTERN",
    "DNSLabel",
    "DNSSubdomain",
    "ImageReference",
    "LabelKey",
    "LabelValue",
    "Quantity",
    "Time",
    "format_time",
    "is_dns_label",
    "is_dns_subdomain",
    "is_label_key",
]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_MAX = 253
# A label value may be empty; otherwise alphanumeric at both ends with - _ . inside.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_VALUE_MAX = 63
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
)
LABEL_KEY_MAX = 316
# The name part of a label key ("app" in "example.com/app").
QUALIFIED_NAME_PATTERN = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
# docker/distribution reference grammar, simplified: optional registry host[:port], lower-case
# path components, optional tag, optional digest.
_IMG_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMG_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?"  # noqa: E501 (one regex)
IMAGE_REFERENCE_PATTERN = (
    rf"^{_IMG_DOMAIN}{_IMG_COMPONENT}(?:/{_IMG_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
IMAGE_REFERENCE_MAX = 512
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

_DNS_LABEL_RE = re.compile(DNS_LABEL_PATTERN)
_DNS_SUBDOMAIN_RE = re.compile(DNS_SUBDOMAIN_PATTERN)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_PATTERN)
_QUALIFIED_NAME_RE = re.compile(QUALIFIED_NAME_PATTERN)
_IMAGE_RE = re.compile(IMAGE_REFERENCE_PATTERN)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def is_dns_label(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 label (the rule for object and container names)."""
    return len(value) <= DNS_LABEL_MAX and bool(_DNS_LABEL_RE.match(value))


def is_dns_subdomain(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 subdomain (the rule for Secret and ConfigMap names)."""
    return len(value) <= DNS_SUBDOMAIN_MAX and bool(_DNS_SUBDOMAIN_RE.match(value))


def is_label_key(value: str) -> bool:
    """Whether ``value`` is a valid label key: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= DNS_LABEL_MAX and bool(_QUALIFIED_NAME_RE.match(name))


def _dns_label(value: str) -> str:
    if not is_dns_label(value):
        raise PydanticCustomError(
            "dns_label",
            "'{value}' is not a valid name: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (a DNS-1123 label, e.g. 'phi-3-adapter')",
            {"value": value},
        )
    return value


def _dns_subdomain(value: str) -> str:
    if not is_dns_subdomain(value):
        raise PydanticCustomError(
            "dns_subdomain",
            "'{value}' is not a valid Kubernetes object name: use at most 253 lower-case letters, "
            "digits, '-' and '.', starting and ending with a letter or digit (a DNS-1123 "
            "subdomain, e.g. 'registry-push-secret')",
            {"value": value},
        )
    return value


def _label_key(value: str) -> str:
    if len(value) > LABEL_KEY_MAX or not is_label_key(value):
        raise PydanticCustomError(
            "label_key",
            "'{value}' is not a valid label key: use [prefix/]name with a name of at most 63 "
            "letters, digits, '-', '_' and '.' (starting and ending with a letter or digit) and "
            "a DNS subdomain prefix, e.g. 'node.kubernetes.io/instance-type'",
            {"value": value},
        )
    return value


def _label_value(value: str) -> str:
    if len(value) > LABEL_VALUE_MAX or not _LABEL_VALUE_RE.match(value):
        raise PydanticCustomError(
            "label_value",
            "'{value}' is not a valid label value: use at most 63 letters, digits, '-', '_' and "
            "'.', starting and ending with a letter or digit",
            {"value": value},
        )
    return value


def _image_reference(value: str) -> str:
    if len(value) > IMAGE_REFERENCE_MAX or not _IMAGE_RE.match(value):
        raise PydanticCustomError(
            "image_reference",
            "'{value}' is not a valid image reference: use [registry[:port]/]repository[:tag]"
            "[@sha256:digest] with a lower-case repository, e.g. "
            "'registry.local:5000/phi-3-adapter:0.0.1'",
            {"value": value},
        )
    return value


def _quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("quantity", "a quantity must be a number or a string")
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise PydanticCustomError(
            "quantity",
            "'{value}' is not a Kubernetes quantity: use a number with an optional suffix, "
            "e.g. '4', '500m', '16Gi'",
            {"value": value},
        )
    return value


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """Format a timestamp the way the API server does (metav1.Time): UTC, seconds, 'Z'."""
    return _to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


DNSLabel = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema(
        {"type": "string", "maxLength": DNS_LABEL_MAX, "pattern": DNS_LABEL_PATTERN},
        mode="validation",
    ),
]
"""A DNS-1123 label: object, container and port names."""

DNSSubdomain = Annotated[
    str,
    AfterValidator(_dns_subdomain),
    WithJsonSchema(
        {"type": "string", "maxLength": DNS_SUBDOMAIN_MAX, "pattern": DNS_SUBDOMAIN_PATTERN},
        mode="validation",
    ),
]
"""A DNS-1123 subdomain: Secret, ConfigMap and Node names."""

LabelKey = Annotated[
    str,
    AfterValidator(_label_key),
    WithJsonSchema(
        {"type": "string", "maxLength": LABEL_KEY_MAX, "pattern": LABEL_KEY_PATTERN},
        mode="validation",
    ),
]
"""A label (or taint) key: ``[prefix/]name``."""

LabelValue = Annotated[
    str,
    AfterValidator(_label_value),
    WithJsonSchema(
        {"type": "string", "maxLength": LABEL_VALUE_MAX, "pattern": LABEL_VALUE_PATTERN},
        mode="validation",
    ),
]
"""A label value (may be empty)."""

ImageReference = Annotated[
    str,
    AfterValidator(_image_reference),
    WithJsonSchema(
        {"type": "string", "maxLength": IMAGE_REFERENCE_MAX, "pattern": IMAGE_REFERENCE_PATTERN},
        mode="validation",
    ),
]
"""A container image reference such as ``registry.local:5000/phi-3-adapter:0.0.1``."""

Quantity = Annotated[
    int | str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        },
        mode="validation",
    ),
]
"""A resource quantity (``16Gi``, ``500m``, ``1``), kept as written so that it round-trips."""

Time = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="validation"),
]
"""A metav1.Time: parsed to an aware UTC datetime, written back as ``YYYY-MM-DDTHH:MM:SSZ``."""
