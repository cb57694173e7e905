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
    ``("done", rid)`` when a request ends; ``("error", rid, kind, message, param)`` when it fails;
    ``("batch", 0, [message, ...])``: the messages of one batched step, sent together.

Two loops serve the same protocol. A ``BatchEngine`` that says it can batch this model gets the
batched loop: every step decodes one token for each running request, new requests join between
steps (``_batch_schedule`` decides which may), and a cancel (the client went away) drops its
request before the next step. Any other engine gets the sequential loop: requests run one at a
time in arrival order, and the engine asks ``cancelled()`` once per step; that reads whatever has
arrived meanwhile, so a cancel stops generation within a step. In both, a request cancelled while
it waited never starts.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol, cast, runtime_checkable

from kaito_inference.backends._batch_schedule import BatchSchedule
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


# One step of a batching engine: per request that produced a token, (rid, token_id, logprob, top,
# finished); ``finished`` means the request ended with that token (EOS or its max_tokens).
StepResult = list[tuple[int, int, float | None, list[tuple[int, float]], bool]]


@runtime_checkable
class BatchEngine(Protocol):
    """Model work that decodes many requests at once, one token each per ``step``."""

    def load(self) -> dict[str, Any]: ...

    def batch_capacity(self) -> int:
        """Requests decoded together; 0 when this model cannot be batched (after ``load``)."""
        ...

    def add(
        self, rid: int, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> None:
        """Let a request join at the next step; raise an ``OpenAIError`` to refuse it."""
        ...

    def step(self) -> StepResult:
        """Decode one token for every request; raising fails the whole batch."""
        ...

    def drop(self, rid: int) -> None:
        """Forget a request (finished, cancelled or failed)."""
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


def serve_commands(conn: Connection, engine: Engine | BatchEngine) -> None:
    """Load the model, then run commands until told to stop or the parent goes away."""
    try:
        try:
            facts = engine.load()
        except Exception as err:
            logger.exception("loading the model failed")
            conn.send(_error(0, err))
            return
        conn.send(("ready", 0, facts))
        if isinstance(engine, BatchEngine) and engine.batch_capacity() > 0:
            _run_batched(conn, engine)
        else:
            _run(conn, cast(Engine, engine))
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


def _run_command(engine: BatchEngine, msg: tuple[Any, ...]) -> tuple[Any, ...]:
    """Run an adapter (or unknown) command; the message that answers it."""
    kind, rid = msg[0], msg[1]
    try:
        if kind == "load_adapter":
            engine.load_adapter(msg[2], msg[3])
        elif kind == "unload_adapter":
            engine.unload_adapter(msg[2])
        else:
            raise ValueError(f"unknown command {kind!r}")
    except Exception as err:
        if not isinstance(err, OpenAIError):
            logger.exception("%s failed", kind)
        return _error(rid, err)
    return ("done", rid)


class _BatchedLoop:
    """The batched loop's state: the pipe, the schedule, and the messages of the current step."""

    def __init__(self, conn: Connection, engine: BatchEngine) -> None:
        self.conn = conn
        self.engine = engine
        self.schedule = BatchSchedule(engine.batch_capacity())
        self.cancelled: set[int] = set()
        self.stopping = False
        self.out: list[tuple[Any, ...]] = []

    def _take(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "cancel":
            if self.schedule.knows(msg[1]):  # a request that already ended may still be cancelled
                self.cancelled.add(msg[1])
        elif msg[0] == "stop":
            self.stopping = True
        else:
            self.schedule.submit(msg)

    def read(self) -> None:
        """Take what has arrived; wait for a command only when there is nothing to do."""
        try:
            if self.schedule.idle:
                self._take(self.conn.recv())
            while self.conn.poll(0):
                self._take(self.conn.recv())
        except (EOFError, OSError):
            self.stopping = True

    def apply_cancels(self) -> None:
        for rid in self.cancelled:
            if rid in self.schedule.running:
                self.engine.drop(rid)
                self.schedule.finished(rid)
            else:
                self.schedule.withdraw(rid)  # it never starts
            self.out.append(("done", rid))
        self.cancelled.clear()

    def admit(self) -> None:
        while (msg := self.schedule.next_command()) is not None:
            if msg[0] != "generate":
                self.out.append(_run_command(self.engine, msg))
                continue
            _, rid, prompt_ids, params, adapter = msg
            try:
                self.engine.add(rid, prompt_ids, params, adapter)
            except Exception as err:
                if not isinstance(err, OpenAIError):
                    logger.exception("generate failed")
                self.out.append(_error(rid, err))
            else:
                self.schedule.started(rid, adapter)

    def step(self) -> None:
        if not self.schedule.running:
            return
        try:
            result = self.engine.step()
        except Exception as err:
            n = len(self.schedule.running)
            logger.exception("a batched step failed; failing its %d requests", n)
            for rid in list(self.schedule.running):
                self.engine.drop(rid)
                self.schedule.finished(rid)
                self.out.append(_error(rid, err))
            return
        for rid, token_id, logprob, top, finished in result:
            self.out.append(("token", rid, token_id, logprob, top))
            if finished:
                self.engine.drop(rid)
                self.schedule.finished(rid)
                self.out.append(("done", rid))

    def flush(self) -> None:
        if len(self.out) == 1:
            self.conn.send(self.out[0])
        elif self.out:
            self.conn.send(("batch", 0, self.out))
        self.out = []


def _run_batched(conn: Connection, engine: BatchEngine) -> None:
    loop = _BatchedLoop(conn, engine)
    while True:
        loop.read()
        if loop.stopping:
            return
        loop.apply_cancels()
        loop.admit()
        loop.step()
        loop.flush()
