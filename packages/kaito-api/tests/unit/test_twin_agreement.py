"""The Python rules and the CRD (schema + CEL) agree on every combination of optional parts.

The invalid-case table checks chosen examples; this walks every combination of which
mutually-dependent fields are present, and requires both layers to accept or reject alike
(and, where the CRD reports exactly one problem, to blame the same field).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from kaito_api import validate_workspace_static
from kaito_api.testing import quickstart_adapter, quickstart_tuning
from kaito_api.testing.crd import admission_for

VOLUME = {"persistentVolumeClaim": {"claimName": "data"}}
IMAGE = "registry.local:5000/x:1"


def _subsets(options: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(options)
    return [
        {k: options[k] for k, on in zip(keys, mask, strict=True) if on}
        for mask in itertools.product([False, True], repeat=len(keys))
    ]


def _tuning_combinations() -> list[tuple[str, dict[str, Any]]]:
    inputs = _subsets(
        {"urls": ["https://example.com/d.parquet"], "image": IMAGE, "volumeSource": VOLUME}
    )
    outputs = _subsets({"image": IMAGE, "volumeSource": VOLUME, "imagePushSecret": "push"})
    combos = []
    for (i, source), (o, dest), count in itertools.product(
        enumerate(inputs), enumerate(outputs), (None, 2)
    ):
        obj = quickstart_tuning()
        obj["tuning"]["input"] = copy.deepcopy(source)
        obj["tuning"]["output"] = copy.deepcopy(dest)
        if count is not None:
            obj["resource"]["count"] = count
        combos.append((f"tuning-in{i}-out{o}-count{count}", obj))
    return combos


def _inference_combinations() -> list[tuple[str, dict[str, Any]]]:
    sources = _subsets(
        {"name": "a", "urls": ["https://example.com/a"], "image": IMAGE, "volumeSource": VOLUME}
    )
    combos = []
    for (s, source), template, preset, twice in itertools.product(
        enumerate(sources), (False, True), (False, True), (False, True)
    ):
        obj = quickstart_adapter()
        inference = obj["inference"]
        if not preset:
            del inference["preset"]
        if template:
            inference["template"] = {"spec": {"containers": []}}
        inference["adapters"] = [{"source": copy.deepcopy(source)}] * (2 if twice else 1)
        combos.append((f"inference-src{s}-tpl{template}-preset{preset}-twice{twice}", obj))
    return combos


COMBINATIONS = _tuning_combinations() + _inference_combinations()


def test_combinations_cover_both_outcomes():
    outcomes = {not validate_workspace_static(obj) for _, obj in COMBINATIONS}
    assert outcomes == {True, False}
    assert len(COMBINATIONS) == 256


@pytest.mark.parametrize(("name", "obj"), COMBINATIONS, ids=[n for n, _ in COMBINATIONS])
def test_python_and_crd_agree(name: str, obj: dict[str, Any], workspace_crd):
    crd_errors = admission_for(workspace_crd, "v1beta1").errors(obj)
    py_errors = validate_workspace_static(obj)

    assert bool(crd_errors) == bool(py_errors), f"crd={crd_errors} python={py_errors}"
    if len(crd_errors) == 1:
        crd_field = crd_errors[0].split(": ", 1)[0]
        assert crd_field in {e.field for e in py_errors}, f"crd={crd_errors} python={py_errors}"
