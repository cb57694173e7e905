"""Reading, format detection, column mapping, row checks and the length policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaito_tuning.config import DatasetSection
from kaito_tuning.data import (
    ColumnMap,
    apply_length_policy,
    detect_format,
    normalise_rows,
    read_rows,
    resolve_data_files,
)
from kaito_tuning.errors import DataError

from ..conftest import chat_rows, write_jsonl, write_parquet


def _section(**kwargs: Any) -> DatasetSection:
    return DatasetSection(**kwargs)


def test_reads_every_supported_file_type(tmp_path: Path) -> None:
    rows = chat_rows(1)
    write_parquet(tmp_path / "a.parquet", rows)
    write_jsonl(tmp_path / "b.jsonl", rows)
    (tmp_path / "c.json").write_text(json.dumps(rows))
    (tmp_path / "d.csv").write_text('prompt,completion\n"Say hi","hi"\n"Say yo","yo"\n')
    (tmp_path / "e.txt").write_text("first line\n\nsecond line\n")
    assert read_rows([tmp_path / "a.parquet"]) == rows
    assert read_rows([tmp_path / "b.jsonl"]) == rows
    assert read_rows([tmp_path / "c.json"]) == rows
    assert read_rows([tmp_path / "d.csv"]) == [
        {"prompt": "Say hi", "completion": "hi"},
        {"prompt": "Say yo", "completion": "yo"},
    ]
    assert read_rows([tmp_path / "e.txt"]) == [{"text": "first line"}, {"text": "second line"}]


def test_dataset_extension_overrides_the_suffix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.data", [{"text": "x"}])
    assert read_rows([path], "jsonl") == [{"text": "x"}]


def test_resolve_directory_relative_path_and_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_parquet(data / "train.parquet", chat_rows(1))
    assert resolve_data_files(None, data_dir=data, download_dir=tmp_path) == [
        data / "train.parquet"
    ]
    assert resolve_data_files("train.parquet", data_dir=data, download_dir=tmp_path) == [
        data / "train.parquet"
    ]
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_files("nope.parquet", data_dir=data, download_dir=tmp_path)


@pytest.mark.parametrize(
    ("columns", "section", "expected"),
    [
        (["messages"], {}, ColumnMap("messages", {"messages": "messages"})),
        (["conv", "id"], {"messages_column": "conv"}, ColumnMap("messages", {"messages": "conv"})),
        (
            ["prompt", "completion"],
            {},
            ColumnMap("prompt_completion", {"prompt": "prompt", "completion": "completion"}),
        ),
        (
            ["instruction", "response"],
            {"context_column": "instruction", "response_column": "response"},
            ColumnMap("prompt_completion", {"prompt": "instruction", "completion": "response"}),
        ),
        (["text", "meta"], {}, ColumnMap("text", {"text": "text"})),
        (["body"], {"text_column": "body"}, ColumnMap("text", {"text": "body"})),
        (["messages", "text"], {"format": "text"}, ColumnMap("text", {"text": "text"})),
    ],
)
def test_detect_format(columns: list[str], section: dict[str, Any], expected: ColumnMap) -> None:
    assert detect_format(columns, _section(**section)) == expected


BAD_COLUMNS = [
    (["question", "answer"], {}, "cannot tell the dataset format"),
    (["messages"], {"messages_column": "conversation"}, "DatasetConfig.messages_column: column"),
    (["prompt"], {"format": "prompt_completion"}, "needs column(s) completion"),
    (["text"], {"context_column": "instruction"}, "DatasetConfig.context_column: column"),
    ([], {"format": "text"}, "needs column(s) text; the dataset has: no columns"),
]


@pytest.mark.parametrize(("columns", "section", "message"), BAD_COLUMNS)
def test_missing_columns_are_named(
    columns: list[str], section: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError) as info:
        detect_format(columns, _section(**section))
    assert message in str(info.value)


MESSAGES = ColumnMap("messages", {"messages": "messages"})
PAIRS = ColumnMap("prompt_completion", {"prompt": "q", "completion": "a"})

BAD_ROWS = [
    (MESSAGES, {"messages": []}, "row 0: column 'messages' must be a non-empty list"),
    (MESSAGES, {"messages": "not json"}, "row 0: column 'messages' is not a JSON list"),
    (MESSAGES, {"messages": None}, "row 0: column 'messages' must be a non-empty list"),
    (
        MESSAGES,
        {"messages": [{"role": "bot", "content": "x"}]},
        "row 0: messages[0].role 'bot' is not one of system, user, assistant, tool",
    ),
    (MESSAGES, {"messages": [{"role": "user"}]}, "messages[0].content must be text"),
    (MESSAGES, {"messages": ["hi"]}, "messages[0] is not an object"),
    (PAIRS, {"q": "hi", "a": ""}, "row 0: column 'a' must be non-empty text"),
    (PAIRS, {"q": None, "a": "x"}, "row 0: column 'q' must be non-empty text"),
]


@pytest.mark.parametrize(("colmap", "row", "message"), BAD_ROWS)
def test_bad_rows_are_refused_with_row_and_column(
    colmap: ColumnMap, row: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError) as info:
        normalise_rows([row], colmap)
    assert message in str(info.value)


def test_messages_stored_as_json_text_are_parsed() -> None:
    row = {"messages": json.dumps([{"role": "user", "content": "hi", "extra": 1}])}
    assert normalise_rows([row], MESSAGES) == [{"messages": [{"role": "user", "content": "hi"}]}]


def test_mapped_columns_become_canonical() -> None:
    assert normalise_rows([{"q": "hi", "a": "yo", "id": 3}], PAIRS) == [
        {"prompt": "hi", "completion": "yo"}
    ]


BAD_FILES = [
    ("bad.jsonl", '{"text": "ok"}\n{"text": \n', "line 2 is not JSON"),
    ("bad.json", "[1, 2]", "record 0 is not a JSON object"),
    ("bad.json", "[{", "invalid JSON"),
    ("bad.parquet", "not parquet at all", "not a readable parquet file"),
    ("bad.xlsx", "x", "unsupported file type '.xlsx'"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_bad_files_are_refused(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_rows([path])
    assert message in str(info.value)


def test_mixed_file_types_in_a_directory_prefer_structured_data(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    write_parquet(tmp_path / "b.parquet", [{"text": "y"}])
    (tmp_path / "dataset_info.json").write_text("{}")
    assert resolve_data_files(str(tmp_path), download_dir=tmp_path) == [tmp_path / "b.parquet"]
    (tmp_path / "b.parquet").unlink()
    assert resolve_data_files(str(tmp_path), download_dir=tmp_path) == [tmp_path / "a.jsonl"]


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \.parquet"):
        resolve_data_files(str(tmp_path), download_dir=tmp_path)


ROWS = [{"text": "a" * n} for n in (3, 10, 5, 12)]


def _length(row: dict[str, Any]) -> int:
    return len(row["text"])


def test_length_policy_truncate_keeps_everything() -> None:
    kept, report = apply_length_policy(ROWS, _length, max_length=8, policy="truncate")
    assert kept == ROWS
    assert (report.over_limit, report.dropped, report.tokens, report.longest) == (2, 0, 24, 12)


def test_length_policy_drop_removes_long_samples() -> None:
    kept, report = apply_length_policy(ROWS, _length, max_length=8, policy="drop")
    assert kept == [ROWS[0], ROWS[2]]
    assert (report.over_limit, report.dropped, report.tokens) == (2, 2, 8)


def test_length_policy_error_names_the_first_long_row() -> None:
    with pytest.raises(DataError) as info:
        apply_length_policy(ROWS, _length, max_length=8, policy="error")
    text = str(info.value)
    assert "dataset row 1 is 10 tokens, over TrainingArguments.max_length=8" in text
    assert "2 of 4 samples" in text
    assert "long_sample_policy" in text


def test_length_policy_drop_everything_is_an_error() -> None:
    with pytest.raises(DataError, match="all 4 samples are longer"):
        apply_length_policy(ROWS, _length, max_length=2, policy="drop")


def test_no_limit_keeps_everything() -> None:
    kept, report = apply_length_policy(ROWS, _length, max_length=None, policy="error")
    assert kept == ROWS
    assert report.over_limit == 0
