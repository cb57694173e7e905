"""Every manifest under examples/ is a valid Workspace for the catalog (no cluster needed).

Why: the examples are what users copy first. Each must parse as a kaito.sh Workspace and pass
the same catalog-aware validation the admission webhook runs (preset known, instance type big
enough, gated models with a modelAccessSecret (without one they get a warning), tuning method
supported and fitting). Examples under ``byo/`` are checked as the controller checks them with
node auto-provisioning off. The cluster half (the API server accepts them) is
e2e/tests/test_examples_apply.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_api.validation import parse_workspace
from kaito_presets.presets import all_presets, get_preset
from kaito_presets.validation import catalog_warnings, validate_workspace

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in {".yaml", ".yml"})


def rel(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{rel(path)}: expected one YAML document, found {len(docs)}"
    assert isinstance(docs[0], dict), f"{rel(path)}: not a mapping"
    return docs[0]


def is_byo(path: Path) -> bool:
    return "byo" in path.relative_to(EXAMPLES).parts


def preset_name(ws: dict[str, Any]) -> str:
    part = ws.get("inference") or ws.get("tuning") or {}
    return str((part.get("preset") or {}).get("name", ""))


def test_examples_exist() -> None:
    dirs = {p.relative_to(EXAMPLES).parts[0] for p in FILES}
    assert {"quickstart", "families", "byo", "tuning"} <= dirs, dirs


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_example_is_a_valid_workspace(path: Path) -> None:
    ws = load(path)
    assert ws.get("kind") == "Workspace", f"{rel(path)}: kind {ws.get('kind')!r}"
    assert ws.get("apiVersion") in {"kaito.sh/v1alpha1", "kaito.sh/v1beta1"}
    parse_workspace(ws)  # raises WorkspaceInvalid naming the field
    errors = validate_workspace(ws, nap_enabled=not is_byo(path))
    assert errors == [], f"{rel(path)}: " + "; ".join(f"{e.field}: {e.message}" for e in errors)


def test_every_preset_family_has_an_example() -> None:
    covered = {get_preset(preset_name(load(p))).family for p in FILES}
    families = {p.family for p in all_presets()}
    assert families - covered == set(), f"families without an example: {families - covered}"


def test_family_examples_name_one_family_each_and_unique_workspaces() -> None:
    files = [p for p in FILES if p.relative_to(EXAMPLES).parts[0] == "families"]
    names = [load(p)["metadata"]["name"] for p in files]
    assert len(names) == len(set(names)), names
    presets = [preset_name(load(p)) for p in files]
    assert len(presets) == len(set(presets)), presets


def test_gated_examples_carry_an_access_secret_and_are_warned_without_it() -> None:
    gated = [
        p
        for p in FILES
        if "inference" in load(p) and get_preset(preset_name(load(p))).needs_access_token
    ]
    assert gated, "expected at least one gated-model example"
    secret = "inference.preset.presetOptions.modelAccessSecret"
    for path in gated:
        ws = load(path)
        assert catalog_warnings(parse_workspace(ws)) == [], rel(path)
        del ws["inference"]["preset"]["presetOptions"]
        # Admitted, as KAITO admits it, with a warning naming the field.
        assert validate_workspace(ws, nap_enabled=not is_byo(path)) == [], rel(path)
        fields = [w.field for w in catalog_warnings(parse_workspace(ws))]
        assert fields == [secret], rel(path)


def test_byo_examples_have_no_instance_type_and_need_nap_off() -> None:
    files = [p for p in FILES if is_byo(p)]
    assert files
    for path in files:
        ws = load(path)
        assert "instanceType" not in ws["resource"], rel(path)
        fields = [e.field for e in validate_workspace(ws, nap_enabled=True)]
        assert fields == ["resource.instanceType"], (rel(path), fields)


def test_tuning_examples_cover_lora_and_qlora() -> None:
    methods = {load(p)["tuning"]["method"] for p in FILES if "tuning" in load(p)}
    assert methods == {"lora", "qlora"}
