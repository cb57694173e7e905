"""The batched loop's admission policy: FIFO, one adapter per batch, the batch's capacity, and
adapter changes that wait for the requests using the adapter."""

from __future__ import annotations

import pytest
from kaito_inference.backends._batch_schedule import BatchSchedule
from kaito_inference.backends.base import SamplingParams

PARAMS = SamplingParams(max_tokens=4)


def _gen(rid: int, adapter: str | None = None) -> tuple[object, ...]:
    return ("generate", rid, [1, 2], PARAMS, adapter)


def _drain(schedule: BatchSchedule) -> list[int]:
    """Start everything that may start now; the request ids started, in order."""
    started = []
    while (cmd := schedule.next_command()) is not None:
        if cmd[0] == "generate":
            schedule.started(cmd[1], cmd[-1])
        started.append(cmd[1])
    return started


def test_requests_join_the_batch_up_to_its_capacity_in_order() -> None:
    schedule = BatchSchedule(capacity=3)
    for rid in range(1, 6):
        schedule.submit(_gen(rid))
    assert _drain(schedule) == [1, 2, 3]
    schedule.finished(2)
    assert _drain(schedule) == [4]
    assert [c[1] for c in schedule.pending] == [5]


def test_another_adapter_waits_for_the_batch_and_blocks_newer_requests() -> None:
    schedule = BatchSchedule(capacity=8)
    schedule.submit(_gen(1, "a"))
    schedule.submit(_gen(2, "b"))
    schedule.submit(_gen(3, "a"))  # same adapter as the batch, but behind the head: no overtaking
    assert _drain(schedule) == [1]
    schedule.finished(1)
    assert _drain(schedule) == [2]
    schedule.finished(2)
    assert _drain(schedule) == [3]


def test_the_base_model_counts_as_an_adapter_of_its_own() -> None:
    schedule = BatchSchedule(capacity=8)
    schedule.submit(_gen(1))
    schedule.submit(_gen(2))
    schedule.submit(_gen(3, "a"))
    assert _drain(schedule) == [1, 2]


def test_unloading_the_batchs_adapter_waits_loading_another_does_not() -> None:
    schedule = BatchSchedule(capacity=8)
    schedule.submit(_gen(1, "a"))
    assert _drain(schedule) == [1]
    schedule.submit(("load_adapter", 2, "b", "/ok/b"))
    assert _drain(schedule) == [2]
    schedule.submit(("unload_adapter", 3, "a"))
    schedule.submit(_gen(4, "a"))  # after the unload: it must see the adapter gone
    assert _drain(schedule) == []
    schedule.finished(1)
    assert _drain(schedule) == [3, 4]


def test_withdrawn_requests_never_start_and_stale_ids_are_unknown() -> None:
    schedule = BatchSchedule(capacity=1)
    schedule.submit(_gen(1))
    schedule.submit(_gen(2))
    assert _drain(schedule) == [1]
    assert schedule.knows(1) and schedule.knows(2) and not schedule.knows(3)
    assert schedule.withdraw(2)
    assert not schedule.withdraw(2)
    schedule.finished(1)
    assert _drain(schedule) == []
    assert schedule.idle


def test_a_batch_holds_at_least_one_request() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BatchSchedule(capacity=0)
