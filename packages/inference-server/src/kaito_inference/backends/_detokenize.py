"""Incremental detokenization: text deltas for a growing token list in O(1) decodes per token.

Why this exists: decoding the whole output after every token is quadratic in its length. The
window trick (from text-generation-inference and vLLM) decodes only the last few tokens twice:
once up to the previous read point and once with the new token, and emits the difference. A
window ending in an incomplete UTF-8 sequence (byte-level tokens) is held back until it completes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


class IncrementalDetokenizer:
    """Feed token ids one at a time; get the text each one adds."""

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens whose text was already emitted

    def add(self, token_id: int) -> str:
        """Append a token; return the new text (empty while a character is incomplete)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""
