"""The server's end of the generation process: spawn it, send it commands, route its answers.

Why this exists: Hugging Face ``generate`` spends most of a small model's step in Python. Run on
a thread of the server, it and the event loop take turns on the GIL once per streamed token, and
every SSE event the loop writes delays the next token (measured: +5 ms on a 32-token stream of
the tiny model). In its own process the model works on one core while the server streams on
another, and the server stays responsive (health probes, metrics) under load. vLLM's V1 engine
runs in its own process for the same reason.

One reader thread receives every message from the child and hands it to the event loop of the
request it belongs to (``call_soon_threadsafe``), so any loop can use the process. (Reading on
the event loop with ``add_reader`` instead was measured slower: +0.5 ms per streamed and +1.1 ms
per non-streamed 32-token request, A/B over 300 requests each.) If the child
dies, every open request fails with ``EngineUnavailable`` and ``lost`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from kaito_inference import errors
from kaito_inference.backends._bursts import take_ready
from kaito_inference.backends._worker_loop import FORWARDED_ERRORS
from kaito_inference.backends.base import SamplingParams
from kaito_inference.errors import EngineUnavailable, OpenAIError

logger = logging.getLogger(__name__)

Message = tuple[Any, ...]
_Deliver = Callable[[Message], object]


class GenerationFailed(RuntimeError):
    """The engine raised something unexpected while serving a request (logged by the child)."""


def raise_for(msg: Message) -> None:
    """Raise the error an ``error`` or ``lost`` message carries; other messages pass."""
    if msg[0] == "lost":
        raise EngineUnavailable(msg[2])
    if msg[0] != "error":
        return
    kind, message, param = msg[2], msg[3], msg[4]
    if kind in FORWARDED_ERRORS:
        cls = getattr(errors, kind)
        assert issubclass(cls, OpenAIError)
        raise cls(message, param=param)
    raise GenerationFailed(message)


def _exit_reason(process: subprocess.Popen[bytes] | None) -> str:
    if process is None:
        return "the generation process closed its pipe"
    try:
        code = process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return "the generation process stopped answering"
    if code < 0:
        return f"the generation process was killed by signal {-code} (out of memory?)"
    return f"the generation process exited with code {code}"


class TokenStream:
    """The messages of one ``generate`` request, read in bursts on the caller's event loop."""

    def __init__(self, owner: GenerationProcess, rid: int, queue: asyncio.Queue[Message]) -> None:
        self._owner = owner
        self._rid = rid
        self._queue = queue
        self._finished = False

    async def next_burst(self) -> list[Message]:
        """Wait for the next message, then take every message already queued too."""
        items = await take_ready(self._queue)
        if items[-1][0] != "token":
            self._finished = True  # done, error and lost are always last
        return items

    def close(self) -> None:
        """Stop listening; if the request is still running, ask the child to cancel it."""
        self._owner._unregister(self._rid)
        if not self._finished:
            self._finished = True
            self._owner._send_quietly(("cancel", self._rid))


class GenerationProcess:
    """A child process serving the ``_worker_loop`` protocol over ``conn``."""

    def __init__(self, conn: Connection, process: subprocess.Popen[bytes] | None = None) -> None:
        self._conn = conn
        self._process = process
        self._send_lock = threading.Lock()
        self._routes: dict[int, tuple[asyncio.AbstractEventLoop, _Deliver]] = {}
        self._routes_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = False
        self._ready_seen = False
        self._engine_started = False
        self.lost: str | None = None  # why the child is gone, once it is
        self._reader = threading.Thread(
            target=self._read, name="kaito-generation-reader", daemon=True
        )

    @classmethod
    def spawn(cls, module: str) -> GenerationProcess:
        """Run ``python -m module FD``: a fresh interpreter (never fork a process that has
        threads), which can import torch while this process does other work."""
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", module, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        return cls(Connection(ours.detach()), process)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start_engine(self, *args: Any) -> dict[str, Any]:
        """Send the child its arguments (see ``child_connection``), wait until it has loaded the
        model, and return the facts it reported."""
        self._send(args)
        self._engine_started = True
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Message] = loop.create_future()
        self._register(0, loop, lambda m: answer.done() or answer.set_result(m))
        self._reader.start()
        try:
            msg = await answer
        finally:
            self._unregister(0)
        if msg[0] == "ready":
            facts: dict[str, Any] = msg[2]
            return facts
        if msg[0] == "error":
            raise RuntimeError(f"loading the model failed: {msg[3]}")
        raise RuntimeError(f"loading the model failed: {msg[2]}")

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to stop, wait for it, and kill it if it does not; requests still open
        then fail with ``EngineUnavailable`` (the server is shutting down)."""
        self._closing = True
        if self._process is not None and not self._engine_started:
            self._process.terminate()  # it never got its arguments: nothing to finish
        else:
            self._send_quietly(("stop", 0))
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        if self._reader.is_alive():
            self._reader.join(timeout)  # it ends at the child's end of the pipe
        self._conn.close()

    # ---- requests -----------------------------------------------------------------------------

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> TokenStream:
        """Queue a generation; read its tokens from the returned stream, then close it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Message] = asyncio.Queue()
        rid = next(self._ids)
        self._register(rid, loop, queue.put_nowait)
        stream = TokenStream(self, rid, queue)
        try:
            self._send(("generate", rid, prompt_ids, params, adapter))
        except BaseException:
            stream.close()
            raise
        return stream

    async def call(self, kind: str, *args: Any) -> None:
        """Run a command (``load_adapter``, ``unload_adapter``) and wait until it is done."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Message] = loop.create_future()
        rid = next(self._ids)
        self._register(rid, loop, lambda m: answer.done() or answer.set_result(m))
        try:
            self._send((kind, rid, *args))
            raise_for(await answer)
        finally:
            self._unregister(rid)

    # ---- plumbing -----------------------------------------------------------------------------

    def _register(self, rid: int, loop: asyncio.AbstractEventLoop, deliver: _Deliver) -> None:
        with self._routes_lock:
            if self.lost is not None:
                raise EngineUnavailable(self.lost)
            self._routes[rid] = (loop, deliver)

    def _unregister(self, rid: int) -> None:
        with self._routes_lock:
            self._routes.pop(rid, None)

    def _send(self, msg: Message) -> None:
        try:
            with self._send_lock:
                self._conn.send(msg)
        except OSError as err:
            raise EngineUnavailable(self.lost or "the generation process is gone") from err

    def _send_quietly(self, msg: Message) -> None:
        with contextlib.suppress(EngineUnavailable):  # nothing to cancel in a process that is gone
            self._send(msg)

    def _deliver(self, rid: int, msg: Message) -> None:
        with self._routes_lock:
            route = self._routes.get(rid)
        if route is None:
            return  # the request stopped listening (cancelled); its leftovers are dropped
        loop, deliver = route
        with contextlib.suppress(RuntimeError):  # that request's loop is closed
            loop.call_soon_threadsafe(deliver, msg)

    def _deliver_batch(self, messages: list[Message]) -> None:
        """The messages of one batched step: one wake-up per event loop, not one per message."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Deliver, Message]]] = {}
        with self._routes_lock:
            for msg in messages:
                route = self._routes.get(msg[1])
                if route is not None:  # else: cancelled, its leftovers are dropped
                    by_loop.setdefault(route[0], []).append((route[1], msg))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_deliver_all, items)

    def _read(self) -> None:
        try:
            while True:
                msg = self._conn.recv()
                if msg[0] == "batch":
                    self._deliver_batch(msg[2])
                    continue
                if msg[0] == "ready":
                    self._ready_seen = True
                self._deliver(msg[1], msg)
        except (EOFError, OSError):
            pass
        reason = "the server is shutting down" if self._closing else _exit_reason(self._process)
        if self._ready_seen and not self._closing:  # a failed load is reported by started()
            logger.critical("%s; failing its requests", reason)
        with self._routes_lock:
            self.lost = reason
            routes = list(self._routes.items())
            self._routes.clear()
        for rid, (loop, deliver) in routes:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, ("lost", rid, reason))


def _deliver_all(items: list[tuple[_Deliver, Message]]) -> None:
    for deliver, msg in items:
        deliver(msg)


def child_connection(argv: list[str]) -> tuple[Connection, tuple[Any, ...]]:
    """In the child: the pipe named by ``spawn`` and the arguments sent first over it."""
    if len(argv) != 2 or not argv[1].isdigit():
        raise SystemExit(f"usage: python -m {argv[0]} FD (started by the inference server)")
    conn = Connection(int(argv[1]))
    args: tuple[Any, ...] = conn.recv()
    return conn, args
