"""docs/user-guide.md stays true to the repository (no cluster needed).

Why: a guide drifts silently. These checks tie it to what it describes: every repository path
it names exists, every ``--set`` in its helm commands is a key of that chart's values.yaml,
and every condition reason in its troubleshooting table is a string the controller or the
provisioner actually sets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "docs" / "user-guide.md"
TEXT = GUIDE.read_text()
SOURCES = [
    REPO / "packages" / "kaito-controller" / "src",
    REPO / "packages" / "gpu-provisioner" / "src",
]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)


def repo_paths(text: str) -> set[str]:
    found = re.findall(r"(?<![\w./-])((?:examples|charts|packages|hack|docs)/[\w./-]+)", text)
    return {p.rstrip(".,)") for p in found}


def helm_sets(block: str) -> list[tuple[str, str]]:
    """(chart directory, --set key) for each helm upgrade/install command in a code block."""
    out = []
    for command in re.split(r"\n(?=\S)", block.replace("\\\n", " ")):
        chart = re.search(r"helm (?:upgrade --install|install) \S+ (charts/[\w-]+)", command)
        if chart:
            out += [(chart.group(1), key) for key in re.findall(r"--set ([\w.]+)=", command)]
    return out


def has_key(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def troubleshooting_reasons(text: str) -> set[str]:
    section = text.split("## 7. Troubleshooting", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    reasons: set[str] = set()
    for row in rows:
        cells = row.split("|")
        reasons |= set(re.findall(r"`([A-Z][A-Za-z]+)`", cells[1] + cells[2]))
    return reasons


def source_strings() -> str:
    return "\n".join(p.read_text() for root in SOURCES for p in root.rglob("*.py"))


def test_guide_names_only_existing_paths() -> None:
    paths = repo_paths(TEXT)
    assert "examples/quickstart/phi-3-mini-inference.yaml" in paths  # the parser works
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == [], missing


def test_helm_sets_are_chart_values() -> None:
    sets = [s for block in code_blocks(TEXT) for s in helm_sets(block)]
    charts = {chart for chart, _ in sets}
    assert charts == {"charts/kaito-workspace", "charts/gpu-provisioner"}, charts
    bad = [
        f"{chart}: {key}"
        for chart, key in sets
        if not has_key(yaml.safe_load((REPO / chart / "values.yaml").read_text()), key)
    ]
    assert bad == [], bad


@pytest.mark.parametrize("reason", sorted(troubleshooting_reasons(TEXT)))
def test_troubleshooting_reason_is_set_by_the_code(reason: str) -> None:
    """Set as a literal, or as a member of kaito_api.conditions' vocabulary that an operator
    uses (``ConditionReason.NODES_READY``)."""
    from kaito_api import conditions

    source = source_strings()
    members = [
        f"{vocabulary.__name__}.{member.name}"
        for vocabulary in (
            conditions.ConditionType,
            conditions.NodeClaimConditionType,
            conditions.ConditionReason,
        )
        for member in vocabulary
        if member.value == reason
    ]
    used = f'"{reason}"' in source or any(m in source for m in members)
    assert used, f"{reason} is in the guide but set nowhere (members: {members})"
