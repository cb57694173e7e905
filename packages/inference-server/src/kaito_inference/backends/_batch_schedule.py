"""Which command of the generation process runs next when requests are batched.

Why this exists: a batching engine decodes many requests at once, but all of them through one
active adapter (peft switches adapters model-wide), and an adapter must not be replaced or unloaded
under requests that use it. This module is that policy and nothing else (no pipe, no torch), so it
is tested on its own:

* commands run in arrival order (FIFO); nothing overtakes the head of the queue, so a request for
  another adapter, or an unload of the adapter in use, waits only until the running batch has
  drained and is never starved by newer requests;
* a ``generate`` joins the running batch while the batch has room and uses the same adapter;
* ``load_adapter``/``unload_adapter`` run between steps unless they touch the batch's adapter.

Commands are the worker loop's message tuples, ``(kind, rid, ...)``; a ``generate`` carries its
adapter last.
"""

from __future__ import annotations

from collections import deque
from typing import Any

Command = tuple[Any, ...]

_ADAPTER_COMMANDS = ("load_adapter", "unload_adapter")


class BatchSchedule:
    """Commands waiting to run, and the requests decoding in the batch (with their adapter)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a batch holds at least one request")
        self.capacity = capacity
        self.pending: deque[Command] = deque()
        self.running: dict[int, str | None] = {}  # rid -> adapter (None: the base model)

    @property
    def idle(self) -> bool:
        """Nothing decoding and nothing waiting: the loop may block on the pipe."""
        return not self.running and not self.pending

    def submit(self, command: Command) -> None:
        self.pending.append(command)

    def knows(self, rid: int) -> bool:
        """Whether ``rid`` is running or waiting (a cancel for anything else is stale)."""
        return rid in self.running or any(c[1] == rid for c in self.pending)

    def withdraw(self, rid: int) -> bool:
        """Remove a waiting command; True if it was waiting (it never runs)."""
        for command in self.pending:
            if command[1] == rid:
                self.pending.remove(command)
                return True
        return False

    def _adapter_in_use(self) -> str | None:
        return next(iter(self.running.values()), None)

    def _may_run(self, command: Command) -> bool:
        kind = command[0]
        if kind == "generate":
            if not self.running:
                return True
            return len(self.running) < self.capacity and command[-1] == self._adapter_in_use()
        if kind in _ADAPTER_COMMANDS:
            return not self.running or command[2] != self._adapter_in_use()
        return True  # unknown commands fail at once, in order

    def next_command(self) -> Command | None:
        """Pop the head of the queue if it may run now; None while it must wait (or none)."""
        if self.pending and self._may_run(self.pending[0]):
            return self.pending.popleft()
        return None

    def started(self, rid: int, adapter: str | None) -> None:
        self.running[rid] = adapter

    def finished(self, rid: int) -> None:
        self.running.pop(rid, None)
