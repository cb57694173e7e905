"""Stop-sequence matching over streamed text, holding back what could still become a stop.

Why this exists: OpenAI's ``stop`` must cut the output before the first stop sequence and never
send any part of it, even when the sequence arrives split over several tokens. Pure logic, so it
is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed text deltas; get back the text that is safe to emit and whether a stop was hit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False
        self.matched: str | None = None

    def feed(self, delta: str) -> str:
        """Add generated text; return what can be sent now (empty once stopped)."""
        if self.stopped:
            return ""
        if not self._stops:
            return delta
        self._pending += delta
        cut = -1
        for stop in self._stops:
            pos = self._pending.find(stop)
            if pos != -1 and (cut == -1 or pos < cut):
                cut, self.matched = pos, stop
        if cut != -1:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        # Keep the longest tail that is a prefix of some stop sequence.
        keep = 0
        for n in range(min(self._hold - 1, len(self._pending)), 0, -1):
            tail = self._pending[-n:]
            if any(s.startswith(tail) for s in self._stops):
                keep = n
                break
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def flush(self) -> str:
        """Return held-back text at the end of generation (no stop matched)."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
