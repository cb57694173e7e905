"""Schemathesis fuzzes the server's own OpenAPI document: no request may produce a 5xx.

Two targets: the EchoBackend (many examples, fast) and the tiny transformers model (fewer
examples, with ``max_tokens`` kept small by the context of 1024 tokens and a short test budget).
Both positive (schema-valid) and negative (schema-violating) inputs are generated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .conftest import serve, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from kaito_inference.config import ServerConfig

    from .conftest import free_port

    config = ServerConfig(
        backend="fake",
        served_model_name="tiny-phi-3",
        port=free_port(),
        adapters_dir=tmp_path_factory.mktemp("none"),
        max_model_len=256,
    )
    with serve(config) as url:
        yield url


@pytest.fixture(scope="module")
def fake_schema(fake_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fake_url}/openapi.json")


@pytest.fixture(scope="module")
def tiny_url(tiny_model_dir: Path, adapters_dir: Path) -> Iterator[str]:
    # max_model_len keeps fuzzed generations short on CPU; all requests still go through HF.
    with serve(tiny_config(tiny_model_dir, adapters_dir, max_model_len=64)) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_schema(tiny_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{tiny_url}/openapi.json")


# schemathesis' own pytest plugin (``from_fixture``) breaks on this pytest version, so each
# operation's hypothesis strategy is driven directly.


def _fuzz(schema: schemathesis.BaseSchema, max_examples: int, path_regex: str = ".*") -> int:
    """Fuzz every operation whose path matches; return the number of operations fuzzed."""
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if re.match(path_regex, op.path)]
    for op in operations:
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        strategy = st.one_of([op.as_strategy(generation_mode=m) for m in modes])

        @given(case=strategy)
        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        run()
    return len(operations)


def test_fake_backend_never_5xx(fake_schema: schemathesis.BaseSchema) -> None:
    assert _fuzz(fake_schema, 60) >= 9


def test_transformers_backend_never_5xx(tiny_schema: schemathesis.BaseSchema) -> None:
    assert _fuzz(tiny_schema, 25, r"^/(v1/(chat/)?completions|chat)$") == 3
