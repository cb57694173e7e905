"""Deterministic names: same inputs give the same name; names fit Kubernetes and AKS limits."""

import re

import pytest

from kaito_controller.naming import fit_label, headless_service_name, nodeclaim_name


def test_nodeclaim_name_is_deterministic_and_fits_agent_pool_rules() -> None:
    a = nodeclaim_name("ns", "ws", "uid", 0)
    assert a == nodeclaim_name("ns", "ws", "uid", 0)
    assert re.fullmatch(r"ws[0-9a-f]{10}", a)


@pytest.mark.parametrize(
    "other",
    [
        ("ns", "ws", "uid", 1),
        ("ns2", "ws", "uid", 0),
        ("ns", "ws2", "uid", 0),
        ("ns", "ws", "uid2", 0),
    ],
)
def test_nodeclaim_name_changes_with_each_input(other: tuple[str, str, str, int]) -> None:
    assert nodeclaim_name(*other) != nodeclaim_name("ns", "ws", "uid", 0)


def test_negative_index_is_refused() -> None:
    with pytest.raises(ValueError, match="index"):
        nodeclaim_name("ns", "ws", "uid", -1)


def test_long_headless_name_is_shortened_with_a_hash() -> None:
    name = headless_service_name("w" * 63)
    assert len(name) == 63 and name.startswith("w" * 40)
    assert name != headless_service_name("w" * 62 + "x")
    assert fit_label("short-headless") == "short-headless"
