"""Batched decoding on the tiny model: a request's output does not depend on its neighbours.

The engine is driven directly (in this process, no pipe) to check the batch's bookkeeping: prompts
of different lengths prefilled together, a request joining a batch mid-flight, one leaving it
mid-flight (cancelled) and finished ones trimmed away must all give each request exactly the
tokens it gets alone (greedy and seeded sampling, logprobs, an adapter). Then the real server
with ``max_concurrency`` 4 answers concurrent streamed and non-streamed requests, with stop
sequences and logprobs, as it answers them one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from .conftest import MODEL, serve, tiny_config

pytestmark = pytest.mark.integration

PROMPTS = (
    [5, 6, 7],
    [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31],
    [40],
    [60, 61, 62, 63, 64, 65],
)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tiny_adapter_dir: Path) -> Iterator[object]:
    from kaito_inference.backends._hf_engine import HFEngine

    config = tiny_config(tiny_model_dir, tiny_model_dir / "no-adapters", max_concurrency=8)
    eng = HFEngine(config, [])
    eng.load()
    eng.load_adapter("tiny-lora", str(tiny_adapter_dir))
    yield eng


def _params(max_tokens: int = 12, **kw: object) -> object:
    from kaito_inference.backends.base import SamplingParams

    return SamplingParams(max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


def _run(
    engine: object,
    requests: dict[int, tuple[list[int], object]],
    *,
    join_at: dict[int, int] | None = None,
    cancel_at: dict[int, int] | None = None,
    adapter: str | None = None,
) -> dict[int, list[tuple[int, float | None]]]:
    """Decode ``requests`` (rid -> (prompt, params)) in one batch; a rid in ``join_at`` joins
    at that step, one in ``cancel_at`` is dropped after that step. Tokens (and logprobs) per rid."""
    join_at = join_at or {}
    cancel_at = cancel_at or {}
    out: dict[int, list[tuple[int, float | None]]] = {rid: [] for rid in requests}
    live: set[int] = set()
    step = 0
    while step == 0 or live or any(s >= step for s in join_at.values()):
        for rid, (prompt, params) in requests.items():
            if join_at.get(rid, 0) == step:
                engine.add(rid, prompt, params, adapter)  # type: ignore[attr-defined]
                live.add(rid)
        for rid, token, logprob, _top, finished in engine.step():  # type: ignore[attr-defined]
            out[rid].append((token, logprob))
            if finished:
                engine.drop(rid)  # type: ignore[attr-defined]
                live.discard(rid)
        for rid, at in cancel_at.items():
            if at == step and rid in live:
                engine.drop(rid)  # type: ignore[attr-defined]
                live.discard(rid)
        step += 1
    return out


def _alone(engine: object, prompt: list[int], params: object, adapter: str | None = None) -> list:
    return _run(engine, {1: (prompt, params)}, adapter=adapter)[1]


def test_mixed_lengths_joining_and_leaving_give_each_request_its_own_tokens(
    engine: object,
) -> None:
    greedy = {rid: (p, _params(4 + 3 * rid, temperature=0.0)) for rid, p in enumerate(PROMPTS)}
    alone = {rid: _alone(engine, p, params) for rid, (p, params) in greedy.items()}
    # 0 and 1 start together (prompts of 3 and 12 tokens), 2 joins at step 3, 3 at step 5.
    together = _run(engine, greedy, join_at={2: 3, 3: 5})
    assert together == alone
    assert [len(v) for v in together.values()] == [4, 7, 10, 13]


def test_a_request_cancelled_mid_batch_leaves_the_others_unchanged(engine: object) -> None:
    requests = {rid: (p, _params(10, temperature=0.0)) for rid, p in enumerate(PROMPTS)}
    alone = {rid: _alone(engine, p, params) for rid, (p, params) in requests.items()}
    together = _run(engine, requests, cancel_at={1: 2})
    assert len(together[1]) == 3  # it stopped right after the step it was cancelled at
    assert together[1] == alone[1][:3]
    for rid in (0, 2, 3):
        assert together[rid] == alone[rid]


def test_seeds_and_logprobs_do_not_depend_on_the_batch(engine: object) -> None:
    requests = {
        rid: (p, _params(8, temperature=1.0, top_p=0.9, seed=rid, logprobs=2))
        for rid, p in enumerate(PROMPTS)
    }
    alone = {rid: _alone(engine, p, params) for rid, (p, params) in requests.items()}
    together = _run(engine, requests, join_at={3: 2})
    for rid in requests:
        assert [t for t, _ in together[rid]] == [t for t, _ in alone[rid]]
        assert [lp for _, lp in together[rid]] == pytest.approx([lp for _, lp in alone[rid]])


def test_an_adapter_batch_matches_the_adapter_alone_and_base_is_restored(engine: object) -> None:
    params = _params(8, temperature=0.0)
    base = _alone(engine, PROMPTS[1], params)
    tuned = _alone(engine, PROMPTS[1], params, adapter="tiny-lora")
    assert tuned != base
    batch = _run(engine, {1: (PROMPTS[1], params), 2: (PROMPTS[0], params)}, adapter="tiny-lora")
    assert batch[1] == tuned
    assert _alone(engine, PROMPTS[1], params) == base


# ---- the server, batching ----------------------------------------------------------------------


def test_concurrent_requests_on_a_batching_server_answer_as_sequential_ones(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_model_dir, tmp_path / "no-adapters", max_concurrency=4)
    prompts = ["The quick brown fox", "Hello", "One two three four five six", "KAITO is"]

    async def ask(client: openai.AsyncOpenAI, prompt: str, stream: bool) -> tuple[str, object]:
        kw = {"model": MODEL, "prompt": prompt, "max_tokens": 10, "temperature": 0}
        if stream:
            chunks = await client.completions.create(**kw, stream=True)
            text = "".join([c.choices[0].text async for c in chunks if c.choices])
            return text, None
        r = await client.completions.create(**kw, logprobs=1)
        lp = r.choices[0].logprobs
        return r.choices[0].text, lp.token_logprobs if lp is not None else None

    async def run(url: str) -> None:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        sequential = [await ask(client, p, stream=False) for p in prompts]
        together = await asyncio.gather(
            *[ask(client, p, stream=i % 2 == 0) for i, p in enumerate(prompts * 2)]
        )
        for i, (text, lps) in enumerate(together):
            want_text, want_lps = sequential[i % len(prompts)]
            assert text == want_text
            if lps is not None:
                assert lps == pytest.approx(want_lps, abs=1e-4)
        # A stop sequence cuts one request of the batch only.
        stop = sequential[0][0][3:5]
        cut, other = await asyncio.gather(
            client.completions.create(
                model=MODEL, prompt=prompts[0], max_tokens=10, temperature=0, stop=[stop]
            ),
            client.completions.create(model=MODEL, prompt=prompts[1], max_tokens=10, temperature=0),
        )
        assert cut.choices[0].text == sequential[0][0][: sequential[0][0].index(stop)]
        assert other.choices[0].text == sequential[1][0]
        await client.close()

    with serve(config) as url:
        asyncio.run(run(url))


def test_sampling_by_inverse_cdf_follows_the_probabilities() -> None:
    import torch
    from kaito_inference.backends._hf_engine import _inverse_cdf

    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5], [0.0, 0.0, 1.0, 0.0]])
    for u, first in ((0.0, 1), (0.25, 1), (0.5, 3), (0.999999, 3)):
        picked = _inverse_cdf(probs, torch.tensor([u, u])).tolist()
        assert picked == [first, 2]  # never a token of probability 0
    draws = torch.rand(4000, generator=torch.Generator().manual_seed(0))
    skewed = torch.tensor([[0.1, 0.6, 0.3]]).expand(4000, 3)
    counts = torch.bincount(_inverse_cdf(skewed, draws), minlength=3) / 4000
    assert counts.tolist() == pytest.approx([0.1, 0.6, 0.3], abs=0.03)


def test_a_model_that_cannot_batch_is_served_by_generate_with_the_same_tokens(
    engine: object, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from kaito_inference.backends._hf_engine import HFEngine

    # The same weights with a sliding window (as Phi-3's and Mistral's configs have): its cache
    # layers cannot be merged, so the engine falls back to generate, one request at a time.
    sliding = tmp_path / "sliding"
    shutil.copytree(tiny_model_dir, sliding)
    config = json.loads((sliding / "config.json").read_text())
    config["sliding_window"] = 512  # longer than any sequence here: same attention as full
    (sliding / "config.json").write_text(json.dumps(config))
    fallback = HFEngine(tiny_config(sliding, tmp_path / "none", max_concurrency=8), [])
    fallback.load()
    assert fallback.batch_capacity() == 0
    params = _params(10, temperature=0.0)
    tokens: list[int] = []

    def emit(token_id: int, logprob: float | None, top: list[tuple[int, float]]) -> None:
        tokens.append(token_id)

    fallback.generate(PROMPTS[1], params, None, emit, lambda: False)  # type: ignore[arg-type]
    assert tokens == [t for t, _ in _alone(engine, PROMPTS[1], params)]
