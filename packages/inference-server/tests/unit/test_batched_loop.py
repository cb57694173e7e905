"""The batched loop of the generation process, without torch: the child's loop runs on a thread
with a scripted ``BatchEngine``, the parent's ``GenerationProcess`` talks to it over a real pipe.

What must hold: requests of different lengths decode in one batch and each gets exactly its own
tokens, then ``done``; a request cancelled mid-batch leaves the batch at the next step while the
others go on; a request waiting for room that is cancelled never starts; a refused request fails
alone; a failed step fails the batch it ran and the next request is served."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import pytest
from kaito_inference.backends._generation_process import (
    GenerationFailed,
    GenerationProcess,
    raise_for,
)
from kaito_inference.backends._worker_loop import StepResult, serve_commands
from kaito_inference.backends.base import SamplingParams
from kaito_inference.errors import ModelNotFound

pytestmark = pytest.mark.timeout(30)


class ScriptedBatchEngine:
    """Each request echoes its prompt back, one token per step; ``0`` in a prompt never ends."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows: dict[int, tuple[list[int], int]] = {}  # rid -> (prompt, tokens emitted)
        self.steps: list[list[int]] = []  # the rids decoded at each step
        self.dropped: list[int] = []
        self.fail_next_step = False
        self.step_delay = 0.0

    def load(self) -> dict[str, Any]:
        return {"max_position_embeddings": 64, "eos_ids": [], "vocab_size": 100, "device": "cpu"}

    def batch_capacity(self) -> int:
        return self.capacity

    def add(
        self, rid: int, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> None:
        if adapter == "gone":
            raise ModelNotFound("the adapter 'gone' was unloaded", param="model")
        self.rows[rid] = (prompt_ids[: params.max_tokens], 0)

    def step(self) -> StepResult:
        time.sleep(self.step_delay)
        if self.fail_next_step:
            self.fail_next_step = False
            raise RuntimeError("CUDA out of memory")
        self.steps.append(sorted(self.rows))
        out: StepResult = []
        for rid, (prompt, done) in list(self.rows.items()):
            token = prompt[done % len(prompt)]
            endless = 0 in prompt
            self.rows[rid] = (prompt, done + 1)
            out.append((rid, token, None, [], not endless and done + 1 == len(prompt)))
        return out

    def drop(self, rid: int) -> None:
        self.dropped.append(rid)
        self.rows.pop(rid, None)

    def load_adapter(self, name: str, path: str) -> None:
        pass

    def unload_adapter(self, name: str) -> None:
        pass


def _child_thread(conn: Connection, engine: ScriptedBatchEngine) -> None:
    try:
        conn.recv()  # the arguments start_engine sends
        serve_commands(conn, engine)
    finally:
        conn.close()


@contextmanager
def child_on_thread(engine: ScriptedBatchEngine) -> Iterator[GenerationProcess]:
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


async def _tokens(
    process: GenerationProcess, prompt: list[int], adapter: str | None = None
) -> list[int]:
    stream = process.generate(prompt, SamplingParams(max_tokens=16), adapter)
    tokens: list[int] = []
    try:
        while True:
            for msg in await stream.next_burst():
                if msg[0] == "token":
                    tokens.append(msg[2])
                else:
                    raise_for(msg)
                    return tokens
    finally:
        stream.close()


async def test_requests_of_different_lengths_decode_in_one_batch() -> None:
    engine = ScriptedBatchEngine(capacity=4)
    engine.step_delay = 0.002
    prompts = [[1], [2, 3, 4], [5, 6, 7, 8, 9, 10], [11, 12]]
    with child_on_thread(engine) as process:
        await process.start_engine()
        results = await asyncio.gather(*[_tokens(process, p) for p in prompts])
    assert results == prompts
    assert max(len(rids) for rids in engine.steps) > 1  # they did share steps
    assert sum(len(rids) for rids in engine.steps) == sum(len(p) for p in prompts)


async def test_a_cancel_mid_batch_drops_only_that_request() -> None:
    engine = ScriptedBatchEngine(capacity=4)
    engine.step_delay = 0.002
    with child_on_thread(engine) as process:
        await process.start_engine()
        endless = process.generate([0, 7], SamplingParams(max_tokens=16), None)
        await endless.next_burst()
        others = asyncio.gather(_tokens(process, [1, 2, 3, 4, 5, 6, 7, 8]), _tokens(process, [9]))
        await asyncio.sleep(0.01)
        endless.close()  # its client went away mid-batch
        assert await others == [[1, 2, 3, 4, 5, 6, 7, 8], [9]]
        steps_after = len(engine.steps)
        assert await _tokens(process, [3, 4]) == [3, 4]
    endless_rid = 1
    assert endless_rid in engine.dropped
    last_with_it = max(i for i, rids in enumerate(engine.steps) if endless_rid in rids)
    assert last_with_it < steps_after  # it left the batch; the later request ran without it


async def test_a_request_cancelled_while_waiting_for_room_never_starts() -> None:
    engine = ScriptedBatchEngine(capacity=1)
    engine.step_delay = 0.002
    with child_on_thread(engine) as process:
        await process.start_engine()
        first = asyncio.ensure_future(_tokens(process, [1, 2, 3, 4, 5, 6]))
        await asyncio.sleep(0.005)
        queued = process.generate([2], SamplingParams(max_tokens=4), None)
        queued.close()  # the batch was full; its client left while it waited
        assert await first == [1, 2, 3, 4, 5, 6]
        assert await _tokens(process, [3]) == [3]
    assert all(2 not in rids for rids in engine.steps)


async def test_a_refused_request_fails_alone_and_a_failed_step_fails_its_batch() -> None:
    engine = ScriptedBatchEngine(capacity=4)
    with child_on_thread(engine) as process:
        await process.start_engine()
        with pytest.raises(ModelNotFound, match="unloaded"):
            await _tokens(process, [1], adapter="gone")
        engine.fail_next_step = True
        with pytest.raises(GenerationFailed, match="out of memory"):
            await _tokens(process, [1, 2])
        assert await _tokens(process, [5, 6]) == [5, 6]
