"""The README's plans table is what the catalog plans today (drift check) and reads right."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_presets.plans_table import BEGIN, END, main, render, replace_section
from kaito_presets.presets import all_presets

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def table() -> str:
    return render()


def test_readme_table_is_current(table: str) -> None:
    text = README.read_text()
    section = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert section == table, "packages/presets/README.md plans table is stale: run `make generate`"


def test_rows_say_what_runs_and_why(table: str) -> None:
    # One row per preset.
    assert table.count("| Standard_NC6s_v3 | 1 x V100 |") == len(all_presets())
    quick_start = next(
        line for line in table.splitlines() if line.startswith("| Standard_NC6s_v3 |")
    )
    assert quick_start.startswith(
        "| Standard_NC6s_v3 | 1 x V100 | transformers | kaito-inference-cu12 | float16 | 1 | 1 | "
        "4096 | vLLM: kaito-inference (CUDA 13.0;"
    )
    # Two one-T4 nodes hold llama-3.1-8b (a pipeline stage each).
    assert "| Standard_NC4as_T4_v3 | 1 x T4 | vllm | kaito-inference | float16 | 1 | 2 |" in table
    assert "<b>gpt-oss-20b</b>" in table


def test_main_rewrites_and_checks(tmp_path: Path, table: str) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    assert main([str(doc), "--check"]) == 1
    assert main([str(doc)]) == 0
    assert doc.read_text() == f"intro\n{table}\noutro\n"
    assert main([str(doc), "--check"]) == 0
    with pytest.raises(ValueError, match="markers"):
        replace_section("no markers here", table)
