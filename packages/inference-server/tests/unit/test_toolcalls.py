"""Hermes tool-call parsing."""

from __future__ import annotations

import json

import pytest
from kaito_inference.errors import BadRequest
from kaito_inference.toolcalls import HermesToolCallParser, get_tool_call_parser


def test_parses_calls_and_keeps_the_rest() -> None:
    text = (
        'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'
        '</tool_call><tool_call>{"name": "now", "arguments": "{}"}</tool_call>'
    )
    out = HermesToolCallParser().parse(text)
    assert out.content == "Let me check."
    assert [c.function.name for c in out.tool_calls] == ["get_weather", "now"]
    assert json.loads(out.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert out.tool_calls[1].function.arguments == "{}"
    assert out.tool_calls[0].id != out.tool_calls[1].id


def test_invalid_json_is_plain_content() -> None:
    out = HermesToolCallParser().parse("<tool_call>{not json</tool_call>")
    assert out.tool_calls == []
    assert out.content == "<tool_call>{not json</tool_call>"


def test_unknown_parser_names_known_ones() -> None:
    assert get_tool_call_parser(None) is None
    with pytest.raises(BadRequest, match="known: hermes"):
        get_tool_call_parser("mistral")
