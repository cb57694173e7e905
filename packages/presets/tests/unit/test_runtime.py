"""The kaito.sh/runtime annotation: odd spellings parse to the same runtime, unknown ones are
refused with the annotation named."""

from __future__ import annotations

import pytest
from kaito_presets.runtime import RUNTIME_FIELD, parse_runtime


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("vllm", "vllm"),
        (" vllm ", "vllm"),
        ("Transformers", "transformers"),
        ("TRANSFORMERS\n", "transformers"),
    ],
)
def test_odd_values_parse(value: str | None, expected: str | None) -> None:
    assert parse_runtime(value) == expected


@pytest.mark.parametrize("value", ["tensorrt", "vllm-0.6", "transformer"])
def test_unknown_values_name_the_annotation(value: str) -> None:
    with pytest.raises(ValueError, match=r"is not a runtime; use vllm or transformers") as info:
        parse_runtime(value)
    assert "kaito.sh/runtime" in str(info.value)
    assert RUNTIME_FIELD == "metadata.annotations[kaito.sh/runtime]"
