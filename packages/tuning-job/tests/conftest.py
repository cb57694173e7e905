"""Shared fixtures: offline settings, the tiny model, small datasets and a loopback HTTP server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Never reach a hub from tests, and keep torch to one thread on the shared CI cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

QA = (
    ("What is KAITO?", "KAITO is an operator that automates AI model tuning in Kubernetes."),
    ("Say hello.", "Hello! How are you today?"),
    ("Count to five.", "One two three four five."),
    ("Name a capital.", "Paris is the capital of France."),
)


def chat_rows(repeat: int = 4) -> list[dict[str, Any]]:
    """Rows in the dolly-15k oai-style shape: a `messages` list of {role, content}."""
    rows = []
    for _ in range(repeat):
        for question, answer in QA:
            rows.append(
                {
                    "messages": [
                        {"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
    return rows


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inference package's offline tiny Phi-3 style model (seed 0)."""
    tiny = pytest.importorskip(
        "kaito_inference.testing.tiny_model",
        reason="the tiny model builder ships with kaito-inference (uv sync --all-packages)",
    )
    return tiny.build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve `root` over HTTP on loopback while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback: (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as base_url:
        yield root, base_url
