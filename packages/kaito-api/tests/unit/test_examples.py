"""The quick-start manifests in examples/ validate, round-trip and match kaito_api.testing."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_api import parse_workspace, v1alpha1, v1beta1, validate_workspace_static
from kaito_api.testing import quickstart_adapter, quickstart_inference, quickstart_tuning
from kaito_api.testing.crd import admission_for

EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "quickstart"
BUILDERS = {
    "phi-3-mini-inference.yaml": quickstart_inference,
    "phi-3-mini-adapter.yaml": quickstart_adapter,
    "phi-3-qlora-tuning.yaml": quickstart_tuning,
}
FILES = [(name, "v1alpha1", EXAMPLES / name) for name in BUILDERS] + [
    (name, "v1beta1", EXAMPLES / "v1beta1" / name) for name in BUILDERS
]


@pytest.mark.parametrize(("name", "version", "path"), FILES, ids=[f"{v}/{n}" for n, v, _ in FILES])
def test_quickstart_manifest_is_valid(name, version, path, load_yaml, workspace_crd):
    obj = load_yaml(path)

    assert obj["apiVersion"] == f"kaito.sh/{version}"
    assert validate_workspace_static(obj) == []
    assert admission_for(workspace_crd, version).errors(obj) == []
    assert obj == BUILDERS[name](version), "examples/ and kaito_api.testing drifted apart"


@pytest.mark.parametrize(("name", "version", "path"), FILES, ids=[f"{v}/{n}" for n, v, _ in FILES])
def test_quickstart_manifest_round_trips(name, version, path, load_yaml):
    obj = load_yaml(path)

    workspace = parse_workspace(obj)

    expected_cls = v1alpha1.Workspace if version == "v1alpha1" else v1beta1.Workspace
    assert type(workspace) is expected_cls
    assert workspace.model_dump(by_alias=True, exclude_none=True) == obj


def test_adapter_quickstart_keeps_strength_as_written(load_yaml):
    workspace = parse_workspace(load_yaml(EXAMPLES / "phi-3-mini-adapter.yaml"))

    assert workspace.inference is not None and workspace.inference.adapters is not None
    adapter = workspace.inference.adapters[0]
    assert adapter.strength == "1.0"
    assert adapter.source.name == "phi-3-adapter"
    assert adapter.source.image == "registry.local:5000/phi-3-adapter:0.0.1"


def test_tuning_quickstart_fields(load_yaml):
    workspace = parse_workspace(load_yaml(EXAMPLES / "phi-3-qlora-tuning.yaml"))

    tuning = workspace.tuning
    assert tuning is not None
    assert tuning.method == v1beta1.TuningMethod.QLORA
    assert tuning.input.urls is not None and tuning.input.urls[0].endswith(".parquet?download=true")
    assert tuning.output.image_push_secret == "registry-push-secret"
    assert workspace.inference is None


def test_v1alpha1_has_no_default_instance_type():
    obj = quickstart_inference("v1alpha1")
    del obj["resource"]["instanceType"]

    workspace = parse_workspace(obj)

    assert workspace.resource.instance_type is None
    assert "instanceType" not in workspace.model_dump(exclude_none=True)["resource"]
