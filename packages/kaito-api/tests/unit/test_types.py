"""Syntax of names, label keys, image references, quantities and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from kaito_api.types import (
    DNSLabel,
    ImageReference,
    Quantity,
    Time,
    format_time,
    is_dns_label,
    is_dns_subdomain,
    is_label_key,
)
from pydantic import TypeAdapter, ValidationError


@pytest.mark.parametrize(
    ("value", "label", "subdomain"),
    [
        ("phi-3", True, True),
        ("a", True, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("registry.push", False, True),
        ("Phi", False, False),
        ("-phi", False, False),
        ("phi-", False, False),
        ("phi_3", False, False),
        ("", False, False),
    ],
)
def test_dns_names(value, label, subdomain):
    assert is_dns_label(value) is label
    assert is_dns_subdomain(value) is subdomain


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("apps", True),
        ("kaito.sh/workspace", True),
        ("node.kubernetes.io/instance-type", True),
        ("App_Name.v1", True),
        ("bad key", False),
        ("/x", False),
        ("Example.com/x", False),
        ("x/", False),
        ("a" * 64, False),
    ],
)
def test_label_keys(key, ok):
    assert is_label_key(key) is ok


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("registry.local:5000/phi-3-adapter:0.0.1", True),
        ("mcr.microsoft.com/aks/kaito/kaito-base:0.0.8", True),
        ("busybox", True),
        ("localhost:5000/a/b/c@sha256:" + "a" * 64, True),
        ("ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1", False),
        ("registry.local/Upper:1", False),
        ("registry.local/x:", False),
        ("has space:1", False),
    ],
)
def test_image_references(image, ok):
    adapter = TypeAdapter(ImageReference)
    if ok:
        assert adapter.validate_python(image) == image
    else:
        with pytest.raises(ValidationError, match="not a valid image reference"):
            adapter.validate_python(image)


@pytest.mark.parametrize("value", ["1024Gi", "500m", "1", 4, "1.5", "1e3"])
def test_quantities_accepted_as_written(value):
    assert TypeAdapter(Quantity).validate_python(value) == value


@pytest.mark.parametrize("value", ["1 TB", "Gi", "", True])
def test_quantities_rejected(value):
    with pytest.raises(ValidationError):
        TypeAdapter(Quantity).validate_python(value)


def test_dns_label_error_names_the_value_and_the_rule():
    with pytest.raises(ValidationError) as info:
        TypeAdapter(DNSLabel).validate_python("Phi_3")

    assert "'Phi_3' is not a valid name" in str(info.value)
    assert "DNS-1123 label" in str(info.value)


def test_time_is_utc_with_seconds():
    adapter = TypeAdapter(Time)
    plus_two = timezone(timedelta(hours=2))

    parsed = adapter.validate_python("2026-01-02T05:04:05+02:00")

    assert parsed == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert adapter.dump_python(parsed) == "2026-01-02T03:04:05Z"
    assert (
        format_time(datetime(2026, 1, 2, 5, 4, 5, 999, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"
    )
    assert format_time(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
