"""Render OpenAI chat messages with a Hugging Face tokenizer's chat template.

Why this exists: the transformers and vLLM backends both hold an HF tokenizer and must turn the
same request into the same prompt (roles, tool calls, tools, an optional template override).
Duck-typed: nothing here imports transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaito_inference.errors import BadRequest
from kaito_inference.schemas import ChatCompletionRequest


def read_template(value: str | None) -> str | None:
    """A template given inline, or read from a file path (KAITO's chat_template convention)."""
    if value is None:
        return None
    if "{" not in value and "\n" not in value and Path(value).is_file():
        return Path(value).read_text()
    return value


def _messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    out = []
    for m in req.messages:
        msg: dict[str, Any] = {
            "role": "system" if m.role == "developer" else m.role,
            "content": m.text(),
        }
        if m.tool_calls:
            msg["tool_calls"] = [c.model_dump() for c in m.tool_calls]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return out


def render_chat(tokenizer: Any, req: ChatCompletionRequest, template: str | None) -> str:
    """The prompt text for ``req``, ending with the assistant generation prompt."""
    if template is None and not getattr(tokenizer, "chat_template", None):
        raise BadRequest("this model has no chat template; use /v1/completions", param="messages")
    tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
    try:
        text = tokenizer.apply_chat_template(
            _messages(req),
            tools=tools,
            chat_template=template,
            add_generation_prompt=True,
            tokenize=False,
        )
    except Exception as err:  # jinja raises its own errors for conversations it rejects
        raise BadRequest(
            f"the chat template rejected the messages: {err}", param="messages"
        ) from err
    return str(text)


class HFTokenizerText:
    """The text half of ``TextGenerationBackend`` for engines that hold an HF tokenizer in
    ``_tokenizer`` and an optional template override in ``_template`` (transformers, vLLM)."""

    _tokenizer: Any
    _template: str | None

    def _render_chat(self, req: ChatCompletionRequest) -> str:
        return render_chat(self._tokenizer, req, self._template)

    def _encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))
