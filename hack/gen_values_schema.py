"""Generate a chart's values.schema.json from its values.yaml (deterministic).

Why: every chart value must be documented and validated, and a hand-written schema drifts from
the values. The schema is derived from the values themselves plus their comments:

* the type of each key comes from its default (string, boolean, integer, number, array, object);
* the comment block right above a key is its ``description`` (a leading ``-- `` is dropped);
* a ``# @schema {...}`` line in that block is JSON merged into the key's schema, e.g.
  ``# @schema {"enum": ["azure", "kwok"]}`` or ``{"minimum": 0}``;
* objects with keys get ``additionalProperties: false`` (typos in --set fail), unless the
  annotation says otherwise; empty maps/lists need an annotation to say what they hold.

Usage::

    python hack/gen_values_schema.py charts/gpu-provisioner [charts/other ...]
    python hack/gen_values_schema.py --check charts/gpu-provisioner   # exit 1 if stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-\"']+):(?:\s|$)")
_SCHEMA = re.compile(r"^@schema\s+(?P<json>\{.*\})\s*$")


def comment_index(text: str) -> dict[tuple[str, ...], tuple[str, dict[str, Any]]]:
    """Map each mapping key's path to (description, schema annotation) from its comments."""
    index: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            pending = []
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            pending = []
            continue
        indent, key = len(match["indent"]), match["key"].strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        path = tuple(k for _, k in stack)
        description, schema = _parse_comments(pending, f"line {lineno} ({'.'.join(path)})")
        index[path] = (description, schema)
        pending = []
    return index


def _parse_comments(lines: list[str], where: str) -> tuple[str, dict[str, Any]]:
    text: list[str] = []
    schema: dict[str, Any] = {}
    for line in lines:
        match = _SCHEMA.match(line)
        if match:
            try:
                schema.update(json.loads(match["json"]))
            except json.JSONDecodeError as err:
                raise SystemExit(f"values.yaml {where}: bad @schema JSON: {err}") from err
            continue
        text.append(line.removeprefix("-- ").removeprefix("--"))
    return " ".join(t for t in text if t).strip(), schema


def schema_for(
    value: Any, path: tuple[str, ...], index: dict[tuple[str, ...], Any]
) -> dict[str, Any]:
    description, annotation = index.get(path, ("", {}))
    schema: dict[str, Any] = {}
    if description:
        schema["description"] = description
    if isinstance(value, bool):
        schema["type"] = "boolean"
    elif isinstance(value, int):
        schema["type"] = "integer"
    elif isinstance(value, float):
        schema["type"] = "number"
    elif isinstance(value, str):
        schema["type"] = "string"
    elif isinstance(value, list):
        schema["type"] = "array"
        if value and "items" not in annotation:
            schema["items"] = schema_for(value[0], (*path, "[]"), index)
    elif isinstance(value, dict):
        schema["type"] = "object"
        if value and "additionalProperties" not in annotation:
            schema["properties"] = {
                str(k): schema_for(v, (*path, str(k)), index) for k, v in value.items()
            }
            schema["additionalProperties"] = False
    # numbers given as integers may be set to floats: accept both
    if schema.get("type") == "integer" and any(k in annotation for k in ("exclusiveMinimum",)):
        schema["type"] = "number"
    schema.update(annotation)
    return schema


def generate(chart: Path) -> str:
    values_path = chart / "values.yaml"
    text = values_path.read_text()
    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{values_path}: top level must be a mapping")
    index = comment_index(text)
    undocumented = [".".join(p) for p in _paths(values, index) if not index.get(p, ("",))[0]]
    if undocumented:
        raise SystemExit(f"{values_path}: keys without a description: {', '.join(undocumented)}")
    root = schema_for(values, (), index)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": chart.name, **root}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _paths(
    values: dict[str, Any], index: dict[tuple[str, ...], Any], prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Keys that need a description: leaves, empty maps, and maps declared free-form.

    A map with children needs no description of its own (its children have them), unless its
    ``@schema`` sets ``additionalProperties``: then its children are data, not documented keys.
    """
    out: list[tuple[str, ...]] = []
    for key, value in values.items():
        path = (*prefix, str(key))
        free_form = "additionalProperties" in index.get(path, ("", {}))[1]
        if isinstance(value, dict) and value and not free_form:
            out.extend(_paths(value, index, path))
        else:
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("charts", nargs="+", type=Path, help="chart directories")
    parser.add_argument("--check", action="store_true", help="fail if the schema is stale")
    args = parser.parse_args(argv)
    stale = []
    for chart in args.charts:
        target = chart / "values.schema.json"
        content = generate(chart)
        if args.check:
            if not target.exists() or target.read_text() != content:
                stale.append(str(target))
        else:
            target.write_text(content)
    if stale:
        print(f"stale (run hack/gen_values_schema.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
