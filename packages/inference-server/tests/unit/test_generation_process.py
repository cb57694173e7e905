"""The generation process protocol, both ends, without torch: the child's command loop runs on a
thread with a scripted engine, the parent's ``GenerationProcess`` talks to it over a real pipe.

What must hold: tokens come back in order and end with ``done``; a request whose stream is closed
stops within a step (or never starts if it was still queued), and the next one is served; engine
errors come back as the same OpenAI error; a child that goes away fails the open requests with
``EngineUnavailable``; and the transformers backend turns the messages into bursts."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import pytest
from kaito_inference.backends._generation_process import (
    GenerationFailed,
    GenerationProcess,
    TokenStream,
    child_connection,
)
from kaito_inference.backends._worker_loop import Emit, serve_commands
from kaito_inference.backends.base import SamplingParams
from kaito_inference.config import ServerConfig
from kaito_inference.errors import EngineUnavailable, InvalidAdapter, ModelNotFound

pytestmark = pytest.mark.timeout(30)

GenerateFn = Callable[[list[int], SamplingParams, str | None, Emit, Callable[[], bool]], None]


class ScriptedEngine:
    """Emits ``prompt_ids`` back as tokens unless a test swaps ``generate_fn``."""

    def __init__(self, load_error: Exception | None = None) -> None:
        self.load_error = load_error
        self.prompts: list[list[int]] = []
        self.adapters: set[str] = set()
        self.generate_fn: GenerateFn = self._echo

    def load(self) -> dict[str, Any]:
        if self.load_error is not None:
            raise self.load_error
        return {"max_position_embeddings": 64, "eos_ids": [0], "vocab_size": 100, "device": "cpu"}

    @staticmethod
    def _echo(
        prompt: list[int], params: SamplingParams, adapter: str | None, emit: Emit, _: Any
    ) -> None:
        for token_id in prompt[: params.max_tokens]:
            emit(token_id, None, [])

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        emit: Emit,
        cancelled: Callable[[], bool],
    ) -> None:
        self.prompts.append(prompt_ids)
        if adapter is not None and adapter not in self.adapters:
            raise ModelNotFound(f"the adapter '{adapter}' was unloaded", param="model")
        self.generate_fn(prompt_ids, params, adapter, emit, cancelled)

    def load_adapter(self, name: str, path: str) -> None:
        if not path.startswith("/ok"):
            raise InvalidAdapter(f"no adapter_config.json in {path}", param="lora_path")
        self.adapters.add(name)

    def unload_adapter(self, name: str) -> None:
        self.adapters.discard(name)


def _child_thread(conn: Connection, engine: ScriptedEngine) -> None:
    try:
        conn.recv()  # the arguments start_engine sends (child_connection reads them in a child)
        serve_commands(conn, engine)
    finally:
        conn.close()  # as the real child does on its way out


@contextmanager
def child_on_thread(engine: ScriptedEngine) -> Iterator[GenerationProcess]:
    ours, theirs = multiprocessing.Pipe()
    thread = threading.Thread(target=_child_thread, args=(theirs, engine), daemon=True)
    thread.start()
    process = GenerationProcess(ours)
    try:
        yield process
    finally:
        process.close()
        thread.join(5)
        assert not thread.is_alive()


async def _collect(stream: TokenStream) -> list[tuple[Any, ...]]:
    messages: list[tuple[Any, ...]] = []
    while not messages or messages[-1][0] == "token":
        messages.extend(await stream.next_burst())
    stream.close()
    return messages


PARAMS = SamplingParams(max_tokens=16)


async def test_start_engine_returns_the_facts_the_child_reported() -> None:
    with child_on_thread(ScriptedEngine()) as process:
        facts = await process.start_engine()
    assert facts["max_position_embeddings"] == 64
    assert facts["eos_ids"] == [0]


async def test_a_failed_load_raises_with_the_childs_reason() -> None:
    engine = ScriptedEngine(load_error=OSError("no config.json in /models/x"))
    failed = pytest.raises(RuntimeError, match=r"loading the model failed: .*no config\.json")
    with child_on_thread(engine) as process, failed:
        await process.start_engine()


async def test_tokens_come_back_in_order_then_done() -> None:
    with child_on_thread(ScriptedEngine()) as process:
        await process.start_engine()
        messages = await _collect(process.generate([5, 6, 7], PARAMS, None))
    assert [m[2] for m in messages if m[0] == "token"] == [5, 6, 7]
    assert messages[-1][0] == "done"


async def test_closing_a_stream_stops_generation_and_frees_the_child() -> None:
    engine = ScriptedEngine()
    steps: list[int] = []
    stopped = threading.Event()

    def endless(prompt: list[int], params: Any, adapter: Any, emit: Emit, cancelled: Any) -> None:
        while not cancelled():
            steps.append(1)
            emit(1, None, [])
            time.sleep(0.001)  # a model step
            if len(steps) > 5_000:
                raise AssertionError("never cancelled")
        stopped.set()

    engine.generate_fn = endless
    with child_on_thread(engine) as process:
        await process.start_engine()
        stream = process.generate([1], PARAMS, None)
        await stream.next_burst()
        stream.close()  # the client went away
        assert await asyncio.to_thread(stopped.wait, 5)
        engine.generate_fn = ScriptedEngine._echo
        messages = await _collect(process.generate([3, 4], PARAMS, None))
    assert [m[2] for m in messages if m[0] == "token"] == [3, 4]


async def test_a_request_cancelled_while_queued_never_starts() -> None:
    engine = ScriptedEngine()
    gate = threading.Event()
    entered = threading.Event()

    def blocked(prompt: list[int], params: Any, adapter: Any, emit: Emit, cancelled: Any) -> None:
        entered.set()
        gate.wait(5)
        emit(prompt[0], None, [])

    engine.generate_fn = blocked
    with child_on_thread(engine) as process:
        await process.start_engine()
        first = process.generate([1], PARAMS, None)
        assert await asyncio.to_thread(entered.wait, 5)
        queued = process.generate([2], PARAMS, None)
        queued.close()  # its client left while it waited
        gate.set()
        assert [m[0] for m in await _collect(first)] == ["token", "done"]
        engine.generate_fn = ScriptedEngine._echo
        await _collect(process.generate([3], PARAMS, None))
    assert engine.prompts == [[1], [3]]


async def test_engine_errors_come_back_as_the_same_openai_error() -> None:
    engine = ScriptedEngine()
    with child_on_thread(engine) as process:
        await process.start_engine()
        with pytest.raises(InvalidAdapter, match=r"adapter_config\.json") as bad:
            await process.call("load_adapter", "a", "/elsewhere")
        assert bad.value.param == "lora_path"
        await process.call("load_adapter", "a", "/ok/a")
        assert engine.adapters == {"a"}
        messages = await _collect(process.generate([1], PARAMS, "gone"))
    assert messages[-1][:3] == ("error", messages[-1][1], "ModelNotFound")


async def test_an_unexpected_engine_error_fails_only_its_request() -> None:
    engine = ScriptedEngine()

    def broken(*_: Any) -> None:
        raise ValueError("tensor shapes do not match")

    engine.generate_fn = broken
    with child_on_thread(engine) as process:
        await process.start_engine()
        messages = await _collect(process.generate([1], PARAMS, None))
        assert messages[-1][2:4] == ("internal", "ValueError: tensor shapes do not match")
        engine.generate_fn = ScriptedEngine._echo
        again = await _collect(process.generate([9], PARAMS, None))
    assert again[0][2] == 9


def _crashing_child(conn: Connection) -> None:
    """Loads, takes one command, then dies without a word (as a killed process would)."""
    conn.recv()  # its arguments
    conn.send(("ready", 0, {}))
    conn.recv()
    conn.close()


async def test_a_child_that_dies_fails_open_and_new_requests() -> None:
    ours, theirs = multiprocessing.Pipe()
    thread = threading.Thread(target=_crashing_child, args=(theirs,), daemon=True)
    thread.start()
    process = GenerationProcess(ours)
    try:
        await process.start_engine()
        stream = process.generate([1], PARAMS, None)
        messages = await stream.next_burst()
        assert messages[0][0] == "lost"
        assert process.lost is not None and "closed its pipe" in process.lost
        with pytest.raises(EngineUnavailable, match="closed its pipe"):
            process.generate([2], PARAMS, None)
    finally:
        process.close()
        thread.join(5)


def test_child_connection_rejects_a_missing_descriptor() -> None:
    with pytest.raises(SystemExit, match="usage"):
        child_connection(["kaito_inference.backends._hf_engine"])


# ---- the transformers backend: messages to bursts --------------------------------------------


class _Owner:
    """Stands in for the GenerationProcess behind a TokenStream; records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def _unregister(self, rid: int) -> None:
        pass

    def _send_quietly(self, msg: tuple[Any, ...]) -> None:
        self.sent.append(msg)


class _QueuedProcess:
    """A generation process whose next request answers with the messages queued in ``queue``."""

    def __init__(self) -> None:
        self.owner = _Owner()
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.lost: str | None = None

    def generate(self, prompt: list[int], params: SamplingParams, adapter: str | None) -> Any:
        return TokenStream(self.owner, 7, self.queue)  # type: ignore[arg-type]


def _backend() -> tuple[Any, _QueuedProcess]:
    from kaito_inference.backends import transformers as tb

    backend = tb.TransformersBackend(ServerConfig(model="stub", backend="transformers"))
    process = _QueuedProcess()
    backend._process = process
    backend._ready = True
    backend._eos = frozenset({0})
    backend._decode = lambda ids: "".join(chr(ord("a") + i - 1) for i in ids)
    return backend, process


def _token(token_id: int) -> tuple[Any, ...]:
    return ("token", 7, token_id, None, [])


async def test_tokens_that_arrived_together_make_one_burst() -> None:
    backend, process = _backend()
    for token_id in (1, 2, 3, 0):  # a b c, then EOS
        process.queue.put_nowait(_token(token_id))
    bursts = backend._generate_bursts([5], SamplingParams(max_tokens=10), None)
    assert [ev.text for ev in await bursts.__anext__()] == ["a", "b", "c"]
    with pytest.raises(StopAsyncIteration):
        await bursts.__anext__()


async def test_a_lone_token_goes_out_without_waiting_for_more() -> None:
    backend, process = _backend()
    process.queue.put_nowait(_token(1))
    bursts = backend._generate_bursts([5], SamplingParams(max_tokens=10), None)
    assert [ev.text for ev in await asyncio.wait_for(bursts.__anext__(), 5)] == ["a"]
    process.queue.put_nowait(_token(2))
    process.queue.put_nowait(("done", 7))
    assert [ev.text for ev in await bursts.__anext__()] == ["b"]
    with pytest.raises(StopAsyncIteration):
        await bursts.__anext__()
    assert process.owner.sent == []  # it ended by itself: nothing to cancel


async def test_tokens_before_an_error_go_out_then_it_raises() -> None:
    backend, process = _backend()
    process.queue.put_nowait(_token(1))
    process.queue.put_nowait(("error", 7, "internal", "ValueError: boom", None))
    bursts = backend._generate_bursts([5], SamplingParams(max_tokens=10), None)
    assert [ev.text for ev in await bursts.__anext__()] == ["a"]
    with pytest.raises(GenerationFailed, match="boom"):
        await bursts.__anext__()


async def test_a_lost_engine_is_a_503_error() -> None:
    backend, process = _backend()
    process.queue.put_nowait(("lost", 7, "the generation process was killed by signal 9"))
    bursts = backend._generate_bursts([5], SamplingParams(max_tokens=10), None)
    with pytest.raises(EngineUnavailable, match="signal 9") as err:
        await bursts.__anext__()
    assert err.value.status_code == 503


async def test_stopping_at_max_tokens_cancels_the_rest_in_the_child() -> None:
    backend, process = _backend()
    for token_id in (1, 2, 3):
        process.queue.put_nowait(_token(token_id))
    bursts = backend._generate_bursts([5], SamplingParams(max_tokens=2), None)
    assert [ev.text for ev in await bursts.__anext__()] == ["a", "b"]
    with pytest.raises(StopAsyncIteration):
        await bursts.__anext__()
    assert process.owner.sent == [("cancel", 7)]


async def test_ready_turns_false_when_the_engine_is_lost() -> None:
    backend, process = _backend()
    assert await backend.ready()
    process.lost = "the generation process exited with code 1"
    assert not await backend.ready()


def _child_ignoring_work(conn: Connection) -> None:
    """Takes a request and never answers it; leaves only when told to stop."""
    conn.recv()  # its arguments
    conn.send(("ready", 0, {}))
    while conn.recv()[0] != "stop":
        pass
    conn.close()


async def test_closing_fails_the_requests_still_open() -> None:
    ours, theirs = multiprocessing.Pipe()
    thread = threading.Thread(target=_child_ignoring_work, args=(theirs,), daemon=True)
    thread.start()
    process = GenerationProcess(ours)
    await process.start_engine()
    stream = process.generate([1], PARAMS, None)
    await asyncio.to_thread(process.close)
    assert await stream.next_burst() == [("lost", 1, "the server is shutting down")]
    thread.join(5)
    assert not thread.is_alive()


def test_closing_before_the_engine_started_terminates_the_child() -> None:
    ours, _theirs = multiprocessing.Pipe()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process = GenerationProcess(ours, child)
    started = time.monotonic()
    process.close()
    assert child.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 5
