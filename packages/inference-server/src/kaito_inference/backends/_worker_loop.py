"""The command loop of the generation process: requests in over a pipe, tokens out.

Why this exists: the transformers backend runs the model in a child process, so that the Python
work of Hugging Face ``generate`` and the server's event loop do not take turns on one GIL (see
``_generation_process`` for the parent's end). This module is the child's side of that pipe and
knows nothing about torch: an ``Engine`` does the model work, so the loop is tested with a fake.

Messages are plain tuples, ``(kind, request_id, *payload)``.

Parent to child:
    ``("generate", rid, prompt_ids, params, adapter)``, ``("cancel", rid)``,
    ``("load_adapter", rid, name, path)``, ``("unload_adapter", rid, name)``, ``("stop", 0)``.
Child to parent:
    ``("ready", 0, facts)`` once the model is loaded, or ``("error", 0, ...)`` if it is not;
    ``("token", rid, token_id, logprob, top)`` per generated token (``top``: ``[(id, logprob)]``);
    ``("done", rid)`` when a request ends; ``("error", rid, kind, message, param)`` when it fails.

Requests run one at a time in arrival order. While one generates, the engine asks
``cancelled()`` once per step; that reads whatever has arrived meanwhile, so a cancel (the client
went away) stops generation within a step, and a request cancelled while it waited never starts.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from kaito_inference.backends.base import SamplingParams
from kaito_inference.errors import OpenAIError

logger = logging.getLogger(__name__)

Emit = Callable[[int, float | None, list[tuple[int, float]]], None]

# Errors the parent raises again as the same OpenAI error (kind -> class name in errors.py).
FORWARDED_ERRORS = ("ModelNotFound", "InvalidAdapter", "BadRequest")


class Engine(Protocol):
    """The model work of the generation process."""

    def load(self) -> dict[str, Any]:
        """Load the model; return the facts the parent needs (see ``HFEngine.load``)."""
        ...

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        emit: Emit,
        cancelled: Callable[[], bool],
    ) -> None:
        """Generate, calling ``emit`` per token; stop early once ``cancelled()`` is true."""
        ...

    def load_adapter(self, name: str, path: str) -> None: ...

    def unload_adapter(self, name: str) -> None: ...


class _Inbox:
    """Commands read from the pipe but not run yet, and the requests cancelled so far."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.pending: deque[tuple[Any, ...]] = deque()
        self.running: int | None = None
        self.cancelled: set[int] = set()
        self.stopping = False

    def _take(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "cancel":
            # A request that already ended may still be cancelled (the parent stopped reading at
            # the same moment); remember only cancels that can matter.
            rid = msg[1]
            if rid == self.running or any(m[1] == rid for m in self.pending):
                self.cancelled.add(rid)
        elif msg[0] == "stop":
            self.stopping = True
        else:
            self.pending.append(msg)

    def poll(self) -> None:
        """Read everything that has arrived, without waiting. A closed pipe means stop."""
        try:
            while self._conn.poll(0):
                self._take(self._conn.recv())
        except (EOFError, OSError):
            self.stopping = True

    def next(self) -> tuple[Any, ...] | None:
        """The next command to run, waiting for one; None once told to stop."""
        while not self.pending and not self.stopping:
            try:
                self._take(self._conn.recv())
            except (EOFError, OSError):
                self.stopping = True
        self.poll()  # a cancel for it may be right behind it
        return None if self.stopping else self.pending.popleft()


def _error(rid: int, err: BaseException) -> tuple[Any, ...]:
    if isinstance(err, OpenAIError) and type(err).__name__ in FORWARDED_ERRORS:
        return ("error", rid, type(err).__name__, err.message, err.param)
    return ("error", rid, "internal", f"{type(err).__name__}: {err}", None)


def serve_commands(conn: Connection, engine: Engine) -> None:
    """Load the model, then run commands until told to stop or the parent goes away."""
    try:
        try:
            facts = engine.load()
        except Exception as err:
            logger.exception("loading the model failed")
            conn.send(_error(0, err))
            return
        conn.send(("ready", 0, facts))
        _run(conn, engine)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone: nobody is left to answer


def _run(conn: Connection, engine: Engine) -> None:
    inbox = _Inbox(conn)
    while (msg := inbox.next()) is not None:
        kind, rid = msg[0], msg[1]
        inbox.running = rid
        if rid in inbox.cancelled:
            inbox.cancelled.discard(rid)
            conn.send(("done", rid))
            continue
        try:
            if kind == "generate":
                _, _, prompt_ids, params, adapter = msg

                def emit(token_id: int, logprob: Any, top: list[Any], r: int = rid) -> None:
                    conn.send(("token", r, token_id, logprob, top))

                def cancelled(r: int = rid) -> bool:
                    inbox.poll()
                    return r in inbox.cancelled or inbox.stopping

                engine.generate(prompt_ids, params, adapter, emit, cancelled)
            elif kind == "load_adapter":
                engine.load_adapter(msg[2], msg[3])
            elif kind == "unload_adapter":
                engine.unload_adapter(msg[2])
            else:
                raise ValueError(f"unknown command {kind!r}")
        except Exception as err:
            if not isinstance(err, OpenAIError):
                logger.exception("%s failed", kind)
            conn.send(_error(rid, err))
        else:
            conn.send(("done", rid))
        inbox.running = None
        inbox.cancelled.discard(rid)
