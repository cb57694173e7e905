"""Tool-call parsers for backends that do not bring their own (transformers, fake).

Why this exists: OpenAI clients expect ``message.tool_calls`` rather than JSON inside the text.
The ``hermes`` format (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``) is what
most open chat templates with tools produce; vLLM uses its own parsers under the same names.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Protocol

from kaito_inference.errors import BadRequest
from kaito_inference.schemas import FunctionCall, ToolCall


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    """Generated text split into plain content and tool calls."""

    content: str | None
    tool_calls: list[ToolCall]
    reasoning: str | None = None


class ToolCallParser(Protocol):
    def parse(self, text: str) -> ParsedOutput: ...


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


class HermesToolCallParser:
    """Parse ``<tool_call>{json}</tool_call>`` blocks; invalid JSON stays in the content."""

    def parse(self, text: str) -> ParsedOutput:
        calls: list[ToolCall] = []
        for match in _HERMES.finditer(text):
            try:
                obj = json.loads(match.group(1))
                name = obj["name"]
                args = obj.get("arguments", {})
            except (ValueError, KeyError, TypeError):
                continue
            arguments = args if isinstance(args, str) else json.dumps(args)
            calls.append(
                ToolCall(
                    id=f"call_{uuid.uuid4().hex[:24]}",
                    function=FunctionCall(name=str(name), arguments=arguments),
                )
            )
        if not calls:
            return ParsedOutput(content=text, tool_calls=[])
        rest = _HERMES.sub("", text).strip()
        return ParsedOutput(content=rest or None, tool_calls=calls)


PARSERS: dict[str, type[HermesToolCallParser]] = {"hermes": HermesToolCallParser}


def get_tool_call_parser(name: str | None) -> ToolCallParser | None:
    """Return the named parser, None when ``name`` is None, or raise naming the known ones."""
    if name is None:
        return None
    try:
        return PARSERS[name]()
    except KeyError:
        known = ", ".join(sorted(PARSERS))
        raise BadRequest(
            f"tool_call_parser '{name}' is not available on this backend (known: {known})"
        ) from None
