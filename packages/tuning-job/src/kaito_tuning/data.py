"""Turn the input files into the training set TRL expects, or say exactly what is wrong.

Steps, each a small function: find the files (a file, a directory, or a URL fetched first),
read rows (parquet, JSON lines, JSON arrays, CSV, plain text), detect the format (OpenAI-style
`messages`, `prompt`/`completion` pairs, or `text`) with an optional column mapping, check every
row, measure each sample in tokens with the model's chat template and apply the length policy
(truncate, drop or error). The result keeps TRL's canonical column names, so TRL applies the same
chat template when it tokenizes. Every failure is a DataError naming the file, row or column.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kaito_tuning.config import DEFAULT_DATA_DIR, DatasetSection
from kaito_tuning.errors import DataError
from kaito_tuning.fetch import DATA_SUFFIXES, data_files_in, download, is_url

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

Format = Literal["messages", "prompt_completion", "text"]
ROLES = ("system", "user", "assistant", "tool")
_KIND_BY_SUFFIX = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".txt": "text",
}


@dataclass(frozen=True)
class ColumnMap:
    """The detected format and which source column feeds each canonical column."""

    format: Format
    columns: dict[str, str]  # canonical name -> source column


@dataclass(frozen=True)
class LengthReport:
    """What the length policy did."""

    total: int
    over_limit: int
    dropped: int
    tokens: int
    longest: int


def resolve_data_files(
    source: str | None, *, data_dir: Path = Path(DEFAULT_DATA_DIR), download_dir: Path
) -> list[Path]:
    """The dataset files for `source`: a URL (downloaded), a file, or a directory of files."""
    if source and is_url(source):
        return [download(source, download_dir)]
    if source is None:
        path = data_dir
    else:
        path = Path(source)
        if not path.is_absolute() and not path.exists():
            path = data_dir / source
    if path.is_file():
        return [path]
    if path.is_dir():
        return pick_data_files(data_files_in(path), path)
    raise DataError(f"reading dataset: {path} does not exist")


def pick_data_files(files: Sequence[Path], directory: Path) -> list[Path]:
    """The files of one type from a directory: the first present of parquet, jsonl, json, csv, txt.

    Dataset images and volumes often carry a metadata `.json` or a `.txt` licence next to the
    data; the most structured type wins (DATA_SUFFIXES is in that order) and the rest is logged
    as ignored.
    """
    for suffix in DATA_SUFFIXES:
        chosen = [p for p in files if p.suffix.lower() == suffix]
        if chosen:
            ignored = [p.name for p in files if p not in chosen]
            if ignored:
                logger.warning(
                    "dataset directory %s: using the %s files, ignoring %s (set "
                    "DatasetConfig.dataset_path to choose)",
                    directory,
                    suffix,
                    ", ".join(ignored),
                )
            return chosen
    raise DataError(f"reading dataset: no {', '.join(DATA_SUFFIXES)} files under {directory}")


def kind_of(path: Path, extension: str | None = None) -> str:
    """The reader for a file: parquet, json (JSON or JSON lines), csv or text."""
    suffix = f".{extension}" if extension else path.suffix.lower()
    kind = _KIND_BY_SUFFIX.get(suffix)
    if kind is None:
        raise DataError(
            f"reading dataset {path}: unsupported file type '{suffix}'",
            hint="use parquet, .jsonl, .json, .csv or .txt, or set DatasetConfig.dataset_extension",
        )
    return kind


def read_rows(paths: Sequence[Path], extension: str | None = None) -> list[dict[str, Any]]:
    """All rows of all files, as dicts."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        kind = kind_of(path, extension)
        reader = {"parquet": _read_parquet, "json": _read_json, "csv": _read_csv}.get(kind)
        rows.extend(reader(path) if reader else _read_text(path))
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"reading dataset {path}: not a readable parquet file ({err})") from err


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8", errors="strict")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"reading dataset {path}: invalid JSON ({err})") from err
        records = data
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(
                    f"reading dataset {path}: line {number} is not JSON ({err.msg})",
                    hint="JSON files hold one object per line, or one list of objects",
                ) from err
    bad = next((i for i, rec in enumerate(records) if not isinstance(rec, dict)), None)
    if bad is not None:
        raise DataError(f"reading dataset {path}: record {bad} is not a JSON object")
    return records


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_text(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{"text": line} for line in lines if line.strip()]


def detect_format(columns: Iterable[str], section: DatasetSection) -> ColumnMap:
    """Pick the format and map source columns to TRL's names (messages/prompt/completion/text)."""
    present = list(columns)
    want = section.format
    mapping_fields = {
        "messages": ("messages_column",),
        "prompt_completion": ("context_column", "response_column"),
        "text": ("text_column",),
    }
    if want == "auto":
        want = _auto_format(present, section)
    for field_name in mapping_fields[want]:
        _check_mapped(field_name, getattr(section, field_name), present)
    if want == "messages":
        cols = {"messages": section.messages_column or "messages"}
    elif want == "prompt_completion":
        cols = {
            "prompt": section.context_column or "prompt",
            "completion": section.response_column or "completion",
        }
    else:
        cols = {"text": section.text_column or "text"}
    missing = [src for src in cols.values() if src not in present]
    if missing:
        raise DataError(
            f"dataset format '{want}' needs column(s) {', '.join(missing)}; the dataset has: "
            f"{', '.join(present) or 'no columns'}",
            hint="map them with DatasetConfig.messages_column / context_column / "
            "response_column / text_column",
        )
    return ColumnMap(format=want, columns=cols)


def _check_mapped(field_name: str, value: str | None, present: list[str]) -> None:
    if value is not None and value not in present:
        raise DataError(
            f"DatasetConfig.{field_name}: column '{value}' is not in the dataset; it has: "
            f"{', '.join(present) or 'no columns'}"
        )


def _auto_format(present: list[str], section: DatasetSection) -> Format:
    if section.messages_column or "messages" in present:
        return "messages"
    if (
        section.context_column
        or section.response_column
        or {"prompt", "completion"} <= set(present)
    ):
        return "prompt_completion"
    if section.text_column or "text" in present:
        return "text"
    raise DataError(
        "cannot tell the dataset format: expected a 'messages' column (OpenAI chat style), "
        "'prompt' and 'completion' columns, or a 'text' column; found: "
        f"{', '.join(present) or 'none'}",
        hint="map your columns with DatasetConfig.messages_column, context_column + "
        "response_column, or text_column",
    )


def normalise_rows(rows: Sequence[dict[str, Any]], colmap: ColumnMap) -> list[dict[str, Any]]:
    """Rows with only the canonical columns, each value checked; raises on the first bad row."""
    out = []
    for index, row in enumerate(rows):
        record = {}
        for canonical, source in colmap.columns.items():
            value = row.get(source)
            if canonical == "messages":
                value = _check_messages(value, index, source)
            elif not isinstance(value, str) or not value.strip():
                raise DataError(f"dataset row {index}: column '{source}' must be non-empty text")
            record[canonical] = value
        out.append(record)
    return out


def _check_messages(value: Any, index: int, column: str) -> list[dict[str, str]]:
    if isinstance(value, str):  # CSV and some JSON exports store the list as a string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise DataError(f"dataset row {index}: column '{column}' is not a JSON list") from err
    if not isinstance(value, list) or not value:
        raise DataError(
            f"dataset row {index}: column '{column}' must be a non-empty list of "
            "{role, content} messages"
        )
    checked = []
    for pos, message in enumerate(value):
        where = f"dataset row {index}: {column}[{pos}]"
        if not isinstance(message, dict):
            raise DataError(f"{where} is not an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(f"{where}.role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"{where}.content must be text")
        checked.append({"role": role, "content": content})
    return checked


def apply_length_policy(
    rows: Sequence[dict[str, Any]],
    measure: Callable[[dict[str, Any]], int],
    *,
    max_length: int | None,
    policy: Literal["truncate", "drop", "error"],
) -> tuple[list[dict[str, Any]], LengthReport]:
    """Keep, drop or reject samples longer than `max_length` tokens, as configured."""
    lengths = [measure(row) for row in rows]
    limit = max_length if max_length is not None else float("inf")
    over = [i for i, n in enumerate(lengths) if n > limit]
    if over and policy == "error":
        first = over[0]
        raise DataError(
            f"dataset row {first} is {lengths[first]} tokens, over TrainingArguments.max_length="
            f"{max_length} ({len(over)} of {len(rows)} samples are)",
            hint="raise max_length, or set DatasetConfig.long_sample_policy to truncate or drop",
        )
    dropped = set(over) if policy == "drop" else set()
    kept = [row for i, row in enumerate(rows) if i not in dropped]
    if dropped and not kept:
        raise DataError(
            f"all {len(rows)} samples are longer than TrainingArguments.max_length="
            f"{max_length}; nothing left to train on",
            hint="raise max_length or use long_sample_policy truncate",
        )
    kept_lengths = [n for i, n in enumerate(lengths) if i not in dropped]
    report = LengthReport(
        total=len(rows),
        over_limit=len(over),
        dropped=len(rows) - len(kept),
        tokens=int(sum(min(n, limit) for n in kept_lengths)),
        longest=max(lengths, default=0),
    )
    return kept, report


def token_counter(
    tokenizer: PreTrainedTokenizerBase, fmt: Format
) -> Callable[[dict[str, Any]], int]:
    """A function giving a canonical row's length in tokens, as TRL will tokenize it."""

    def count(row: dict[str, Any]) -> int:
        if fmt == "messages":
            encoded = tokenizer.apply_chat_template(row["messages"], tokenize=True)
            ids = encoded["input_ids"] if isinstance(encoded, Mapping) else encoded
            return len(ids)
        text = row["text"] if fmt == "text" else row["prompt"] + row["completion"]
        return len(tokenizer(text)["input_ids"]) + 1  # TRL appends EOS

    return count


def build_datasets(
    section: DatasetSection,
    files: Sequence[Path],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int | None,
) -> tuple[Dataset, Dataset | None, LengthReport]:
    """Read, check, measure and split the data into TRL-ready train (and eval) datasets."""
    from datasets import Dataset

    rows = read_rows(files, section.dataset_extension)
    where = ", ".join(str(p) for p in files)
    if not rows:
        raise DataError(f"reading dataset {where}: it has no rows")
    colmap = detect_format(rows[0].keys(), section)
    if colmap.format == "messages" and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the dataset is in chat (messages) format but the model's tokenizer has no chat "
            "template",
            hint="set ModelConfig.chat_template",
        )
    if section.max_samples is not None:
        rows = rows[: section.max_samples]
    canonical = normalise_rows(rows, colmap)
    kept, report = apply_length_policy(
        canonical,
        token_counter(tokenizer, colmap.format),
        max_length=max_length,
        policy=section.long_sample_policy,
    )
    logger.info(
        "dataset %s: %d rows, format %s (%s), %d over max_length=%s (%s), %d tokens",
        where,
        report.total,
        colmap.format,
        ", ".join(f"{k}<-{v}" for k, v in colmap.columns.items()),
        report.over_limit,
        max_length,
        section.long_sample_policy,
        report.tokens,
    )
    dataset = Dataset.from_list(kept)
    if section.shuffle_dataset:
        dataset = dataset.shuffle(seed=section.shuffle_seed)
    if section.train_test_split >= 1.0:
        return dataset, None, report
    if len(dataset) < 2:
        raise DataError(
            f"DatasetConfig.train_test_split={section.train_test_split} needs at least 2 rows"
        )
    split = dataset.train_test_split(train_size=section.train_test_split, shuffle=False)
    return split["train"], split["test"], report
