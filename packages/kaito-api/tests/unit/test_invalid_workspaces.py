"""The table of invalid Workspaces is rejected, blaming the right field, by every layer.

Each case runs through the pydantic/static validation (``validate_workspace_static``) and
through the CRD admission emulator (schema + CEL from the generated CRD), in both versions.
The e2e suite runs the same table against a real API server.
"""

from __future__ import annotations

import copy

import pytest
from kaito_api import validate_workspace_static
from kaito_api.testing import INVALID_CREATES, INVALID_UPDATES, VALID_UPDATES, InvalidCase
from kaito_api.testing.crd import admission_for

VERSIONS = ("v1beta1", "v1alpha1")


def _in_version(obj: dict, version: str) -> dict:
    obj = copy.deepcopy(obj)
    obj["apiVersion"] = f"kaito.sh/{version}"
    return obj


def test_table_is_large_and_names_fields():
    assert len(INVALID_CREATES) >= 25
    assert len({c.id for c in INVALID_CREATES}) == len(INVALID_CREATES)
    assert all(c.field for c in INVALID_CREATES)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", INVALID_CREATES, ids=lambda c: c.id)
def test_static_validation_rejects_naming_the_field(case: InvalidCase, version: str):
    errors = validate_workspace_static(_in_version(case.obj, version))

    assert errors, f"{case.id} was accepted"
    blamed = [e for e in errors if e.field.startswith(case.field)]
    assert blamed, f"{case.id}: expected an error on {case.field}, got {errors}"
    assert all(e.message for e in blamed)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", INVALID_CREATES, ids=lambda c: c.id)
def test_crd_admission_rejects_naming_the_field(case: InvalidCase, version: str, workspace_crd):
    errors = admission_for(workspace_crd, version).errors(_in_version(case.obj, version))

    if case.layer == "static":
        # CEL cannot resolve hosts or parse IPs portably: only the static validation rejects it.
        assert errors == []
    else:
        # Rules on the root (metadata.name) have no schema fieldPath: the message names it.
        assert any(
            e.startswith(case.field) or (e.startswith("<root>:") and case.field in e)
            for e in errors
        ), f"{case.id}: expected an error on {case.field}, got {errors}"


def test_unknown_field_message_says_how_to_fix():
    case = next(c for c in INVALID_CREATES if c.id == "unknown-resource-field")

    [error] = validate_workspace_static(case.obj)

    assert error.field == "resource.instancetype"
    assert "unknown field 'instancetype'" in error.message
    assert "camelCase" in error.message


def test_private_urls_can_be_allowed():
    case = next(c for c in INVALID_CREATES if c.id == "tuning-input-url-localhost")

    assert validate_workspace_static(case.obj, allow_private_urls=True) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/data.parquet",
        "http://192.168.1.1/data.parquet",
        "http://[::1]:8080/data.parquet",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://foo.localhost/x",
    ],
)
def test_private_url_hosts_are_rejected(url):
    case = next(c for c in INVALID_CREATES if c.id == "tuning-input-url-localhost")
    obj = copy.deepcopy(case.obj)
    obj["tuning"]["input"]["urls"] = [url]

    errors = validate_workspace_static(obj)

    assert [e.field for e in errors] == ["tuning.input.urls[0]"]


@pytest.mark.parametrize("case", INVALID_UPDATES, ids=lambda c: c.id)
def test_invalid_update_rejected_by_static_validation(case):
    assert validate_workspace_static(case.new) == [], "the new object alone is valid"

    errors = validate_workspace_static(case.new, case.old)

    assert any(e.field == case.field for e in errors), f"{case.id}: got {errors}"


@pytest.mark.parametrize("case", INVALID_UPDATES, ids=lambda c: c.id)
def test_invalid_update_rejected_by_crd(case, workspace_crd):
    admission = admission_for(workspace_crd, "v1beta1")
    assert admission.errors(case.new) == []

    errors = admission.errors(case.new, case.old)

    assert any(e.startswith(case.field + ":") for e in errors), f"{case.id}: got {errors}"


@pytest.mark.parametrize("case", VALID_UPDATES, ids=lambda c: c.id)
def test_valid_update_accepted(case, workspace_crd):
    assert validate_workspace_static(case.new, case.old) == []
    assert admission_for(workspace_crd, "v1beta1").errors(case.new, case.old) == []
