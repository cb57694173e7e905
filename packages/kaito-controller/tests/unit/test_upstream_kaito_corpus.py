"""KAITO v0.12's published Workspaces through the webhook's function, as the webhook sees them.

Every manifest KAITO admits is admitted here, except the differences declared (with the field
our refusal names) in ``kaito_e2e.upstream_kaito.DIFFERENCES``; every manifest KAITO refuses is
refused, naming a field. The ConfigMaps each manifest needs are handed over as the handler
would read them; the e2e twin (e2e/tests/test_upstream_kaito_workspaces.py) applies the same
files to a real API server.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kaito_e2e.upstream_kaito import DIFFERENCES, NAMESPACE, Manifest, manifests
from kaito_presets.presets import find_preset

from kaito_controller.webhook.admission import (
    admission_errors,
    admission_warnings,
    configmaps_to_check,
)

CORPUS = manifests()
FIELD_ROOTS = ("metadata.", "resource.", "inference", "tuning")


def _review(m: Manifest) -> tuple[list[str], list[str]]:
    body: dict[str, Any] = copy.deepcopy(m.body)
    body["metadata"]["namespace"] = NAMESPACE
    namespace, names = configmaps_to_check(body, None)
    assert namespace == NAMESPACE
    configmaps = {n: ({"data": m.configmaps[n]} if n in m.configmaps else None) for n in names}
    errors = admission_errors(body, None, nap_enabled=m.nap, configmaps=configmaps)
    return errors, ([] if errors else admission_warnings(body))


def test_the_corpus_is_whole() -> None:
    assert len(CORPUS) == 71
    assert sum(m.kaito_admits for m in CORPUS) == 47
    # Differences are only declared for what KAITO admits: its refusals are ours too.
    assert set(DIFFERENCES) <= {m.file for m in CORPUS if m.kaito_admits}
    assert sum(m.we_admit for m in CORPUS) == 47 - len(DIFFERENCES) == 45


@pytest.mark.parametrize("m", [m for m in CORPUS if m.kaito_admits], ids=lambda m: m.file)
def test_what_kaito_admits_is_admitted(m: Manifest) -> None:
    errors, _ = _review(m)
    difference = m.expected
    if difference is None:
        assert errors == [], f"{m.file}: KAITO admits it ({m.kaito_verdict})"
        return
    assert errors, f"{m.file} admitted, but it is listed as a difference: {difference.why}"
    assert any(e.startswith(difference.field) for e in errors), errors


@pytest.mark.parametrize("m", [m for m in CORPUS if not m.kaito_admits], ids=lambda m: m.file)
def test_what_kaito_refuses_is_refused_naming_the_field(m: Manifest) -> None:
    errors, _ = _review(m)
    assert errors, f"{m.file}: KAITO refuses it ({m.kaito_verdict}) and we admitted it"
    assert all(e.startswith(FIELD_ROOTS) for e in errors), errors


def test_gated_models_named_without_a_token_are_admitted_with_a_warning() -> None:
    gated = [
        m
        for m in CORPUS
        if m.we_admit
        and "preset" in (m.body.get("inference") or {})
        and (p := find_preset(m.body["inference"]["preset"]["name"])) is not None
        and p.needs_access_token
        and not (m.body["inference"]["preset"].get("presetOptions") or {}).get("modelAccessSecret")
    ]
    assert [m.file for m in gated] == [
        "31-mistral-7b-instruct.yaml",
        "32-mistral-7b.yaml",
        "59-docs-multi-node-llama-3.3-70b.yaml",
    ]
    for m in gated:
        _, warnings = _review(m)
        assert any(
            w.startswith("inference.preset.presetOptions.modelAccessSecret") for w in warnings
        )


def test_a_missing_configmap_is_refused_as_kaito_refuses_it() -> None:
    with_config = [m for m in CORPUS if m.we_admit and m.configmaps and m.body.get("inference")]
    assert len(with_config) >= 5
    for m in with_config:
        stripped = Manifest(m.file, m.body, m.kaito_verdict, m.nap)  # nothing created first
        errors, _ = _review(stripped)
        assert any(
            e.startswith("inference.config: ConfigMap") and "not found" in e for e in errors
        ), (m.file, errors)


def test_every_kaito_preset_name_is_in_the_catalog() -> None:
    from kaito_e2e.upstream_kaito import CORPUS as DATA

    names = [
        line.split("\t")[0]
        for line in (DATA / "kaito-presets.txt").read_text().splitlines()
        if line and not line.startswith(("#", "["))
    ]
    assert len(names) > 100
    # KAITO refuses 'base' (its base image) and the deprecated phi-2 as well.
    assert [n for n in names if find_preset(n) is None] == ["base", "phi-2"]


def _kaito_flags() -> dict[str, dict[str, str]]:
    from kaito_e2e.upstream_kaito import CORPUS as DATA

    out: dict[str, dict[str, str]] = {}
    for line in (DATA / "kaito-presets.txt").read_text().splitlines():
        if not line or line.startswith(("#", "[")):
            continue
        name, _, rest = line.partition("\t")
        flags = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        out.setdefault(name, {}).update(flags)
    return out


# KAITO has no transformers command for phi-4-mini-instruct; here it has one (it is what a V100
# serves it with), as the user guide's migration section says.
TRANSFORMERS_HERE_NOT_IN_KAITO = {"phi-4-mini-instruct", "microsoft/Phi-4-mini-instruct"}


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, f in _kaito_flags().items()
        if f.get("transformers_inference") == "no" and n not in TRANSFORMERS_HERE_NOT_IN_KAITO
    ),
)
def test_transformers_runtime_is_refused_where_kaito_refuses_it(name: str) -> None:
    from kaito_presets.estimator import cheapest_fitting_sku
    from kaito_presets.presets import get_preset

    body = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {
            "name": "ws",
            "namespace": NAMESPACE,
            "annotations": {"kaito.sh/runtime": "transformers"},
        },
        "resource": {
            "instanceType": cheapest_fitting_sku(get_preset(name)).sku.name,
            "labelSelector": {"matchLabels": {"apps": "x"}},
        },
        "inference": {"preset": {"name": name}},
    }
    errors = admission_errors(body, None, nap_enabled=True)
    assert any(
        e.startswith("metadata.annotations[kaito.sh/runtime]: ")
        and "cannot run on transformers" in e
        for e in errors
    ), errors
