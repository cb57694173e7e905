"""IncrementalDetokenizer emits exactly the full decode, token by token, on the tiny tokenizer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from kaito_inference.backends._detokenize import IncrementalDetokenizer

transformers = pytest.importorskip("transformers", reason="needs the transformers extra")


def test_deltas_concatenate_to_the_full_decode(tiny_model_dir: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)

    def decode(ids: object) -> str:
        return str(tok.decode(list(ids), skip_special_tokens=True))  # type: ignore[call-overload]

    rng = random.Random(0)
    texts = ["Hello! How are you today?", "Ünïcödé ✓ 漢字 and emoji 🙂", "def add(a, b):\n  x"]
    sequences = [tok.encode(t, add_special_tokens=False) for t in texts]
    sequences += [[rng.randrange(len(tok)) for _ in range(60)] for _ in range(20)]
    for ids in sequences:
        detok = IncrementalDetokenizer(decode)
        streamed = "".join(detok.add(i) for i in ids)
        full = decode(ids)
        # Everything but a trailing incomplete character is emitted, in order.
        assert full.startswith(streamed)
        assert full[len(streamed) :].strip("\ufffd") == ""
    for text, ids in zip(texts, sequences, strict=False):
        detok = IncrementalDetokenizer(decode)
        assert "".join(detok.add(i) for i in ids) == text
