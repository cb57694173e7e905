"""Data preparation with the tiny model's real tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_tuning.config import DatasetSection
from kaito_tuning.data import build_datasets, token_counter
from kaito_tuning.errors import DataError
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..conftest import chat_rows, write_jsonl, write_parquet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_chat_rows_are_measured_with_the_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    row = chat_rows(1)[0]
    rendered = tokenizer.apply_chat_template(row["messages"], tokenize=False)
    assert "<|assistant|>" in rendered
    assert token_counter(tokenizer, "messages")(row) == len(
        tokenizer(rendered, add_special_tokens=False)["input_ids"]
    )


def test_split_shuffle_and_canonical_columns(
    tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    path = write_parquet(tmp_path / "d.parquet", chat_rows(repeat=4))  # 16 rows
    train, evaluation, report = build_datasets(
        DatasetSection(train_test_split=0.75), [path], tokenizer, max_length=1024
    )
    assert evaluation is not None
    assert (len(train), len(evaluation)) == (12, 4)
    assert train.column_names == ["messages"]
    assert report.total == 16
    assert report.tokens > 16 * 10


def test_drop_policy_with_real_token_counts(
    tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    rows = [{"prompt": "Say hello.", "completion": "Hello!"}] * 3 + [
        {"prompt": "Count.", "completion": " ".join(["one two three"] * 40)}
    ]
    path = write_jsonl(tmp_path / "pc.jsonl", rows)
    train, _, report = build_datasets(
        DatasetSection(long_sample_policy="drop"), [path], tokenizer, max_length=32
    )
    assert len(train) == 3
    assert (report.over_limit, report.dropped) == (1, 1)
    assert report.longest > 32


def test_chat_data_needs_a_chat_template(
    tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", chat_rows(1))
    bare = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    bare.chat_template = None
    with pytest.raises(DataError, match="has no chat template"):
        build_datasets(DatasetSection(), [path], bare, max_length=64)


def test_max_samples_caps_the_rows(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": f"line {i}"} for i in range(10)])
    train, _, _ = build_datasets(
        DatasetSection(max_samples=4, shuffle_dataset=False), [path], tokenizer, max_length=64
    )
    assert train["text"] == [f"line {i}" for i in range(4)]
