"""StopMatcher: cut before the first stop sequence, even when it arrives split over tokens."""

from __future__ import annotations

import pytest
from kaito_inference.stops import StopMatcher


def _run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    m = StopMatcher(stops)
    out = "".join(m.feed(p) for p in pieces)
    return out + m.flush(), m.stopped


@pytest.mark.parametrize(
    ("stops", "pieces", "expected", "stopped"),
    [
        ([], ["a", "b"], "ab", False),
        (["STOP"], ["hello ", "STOP", " more"], "hello ", True),
        (["STOP"], ["hel", "lo S", "TO", "P x"], "hello ", True),
        (["STOP"], ["S", "T", "x"], "STx", False),
        (["\n\n", "END"], ["a\n", "\nb"], "a", True),
        (["abc", "b"], ["xab", "c"], "xa", True),
        (["ab"], ["a"], "a", False),
    ],
)
def test_cuts_at_first_stop(
    stops: list[str], pieces: list[str], expected: str, stopped: bool
) -> None:
    assert _run(stops, pieces) == (expected, stopped)


def test_holds_back_possible_prefix_only() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("abcST") == "abc"
    assert m.feed("x") == "STx"
    assert m.feed("more") == "more"
