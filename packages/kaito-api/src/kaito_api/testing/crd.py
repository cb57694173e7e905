"""An in-process stand-in for the API server's admission of a custom resource.

Unit tests (here and in other packages' fake clients) can check an object against the
generated CRD without a cluster, in the API server's order: strict decoding (unknown fields),
the OpenAPI schema (types, enums, patterns, bounds, required), then the CEL rules, with
``oldSelf`` on update. It is a model of the API server, not the real thing: the e2e admission
test runs the same cases against a real one. What it leaves out: CEL cost limits, defaulting,
list-map merge semantics, and transition rules on list items (no rule of ours uses them).

Requires ``cel-python`` (RE2 regexes, as in the API server) and ``jsonschema``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

try:
    import celpy
    import jsonschema
    from celpy.adapter import json_to_cel
    from celpy.evaluation import CELEvalError
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kaito_api.testing.crd needs the test dependencies cel-python and jsonschema "
        "(kaito-api's dev dependency group)"
    ) from err

__all__ = ["CrdAdmission", "admission_for"]

_ENV = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if "." in key or "/" in key:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@dataclass
class CrdAdmission:
    """Admission of objects of one version of a CRD.

    Attributes:
        schema: The version's ``openAPIV3Schema``.
    """

    schema: dict[str, Any]
    _validator: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._validator = jsonschema.Draft7Validator(_plain_json_schema(self.schema))

    def errors(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[str]:
        """Errors as ``"<path>: <message>"``; empty when the object would be admitted."""
        unknown = [f"{path}: unknown field" for path in _unknown_fields(obj, self.schema, "")]
        if unknown:  # kubectl's strict field validation fails the request here
            return unknown
        schema_errors = [
            f"{_error_path(e)}: {e.message}" for e in self._validator.iter_errors(dict(obj))
        ]
        if schema_errors:  # the API server skips CEL on an object that fails the schema
            return schema_errors
        return list(_cel_errors(self.schema, obj, old, ""))


def admission_for(crd: Mapping[str, Any], version: str) -> CrdAdmission:
    """The :class:`CrdAdmission` of ``version`` of a CRD document."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return CrdAdmission(entry["schema"]["openAPIV3Schema"])
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version}")


def _error_path(error: Any) -> str:
    path = ""
    for key in error.absolute_path:
        path = _join(path, key)
    if error.validator == "required":  # like the API server, blame the missing field itself
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            path = _join(path, missing[0])
    return path or "<root>"


def _plain_json_schema(node: Any) -> Any:
    """Drop the Kubernetes extensions; what is left is JSON-schema compatible."""
    if isinstance(node, list):
        return [_plain_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: _plain_json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "format"
    }


def _unknown_fields(obj: Any, schema: Mapping[str, Any], path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub_path = _join(path, key)
            if props is not None and key in props:
                yield from _unknown_fields(value, props[key], sub_path)
            elif isinstance(extra, dict):
                yield from _unknown_fields(value, extra, sub_path)
            elif props is not None:
                yield sub_path
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            yield from _unknown_fields(item, schema["items"], _join(path, index))


def _cel_errors(schema: Mapping[str, Any], obj: Any, old: Any, path: str) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations", ()):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue
        activation = {"self": json_to_cel(copy.deepcopy(obj))}
        if uses_old:
            activation["oldSelf"] = json_to_cel(copy.deepcopy(old))
        try:
            result = _program(rule["rule"]).evaluate(activation)
        except CELEvalError as err:
            result = err
        ok = result is True or (not isinstance(result, CELEvalError) and bool(result))
        if isinstance(result, CELEvalError):
            rule = {**rule, "message": f"{rule['message']} (evaluation error: {result})"}
        if not ok:
            at = path + rule.get("fieldPath", "") if path else rule.get("fieldPath", "")[1:]
            yield f"{at or '<root>'}: {rule['message']}"
    yield from _cel_children(schema, obj, old, path)


def _cel_children(schema: Mapping[str, Any], obj: Any, old: Any, path: str) -> Iterator[str]:
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = props.get(key) if key in props else extra if isinstance(extra, dict) else None
            if sub is None:
                continue
            old_value = old.get(key) if isinstance(old, dict) else None
            yield from _cel_errors(sub, value, old_value, _join(path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            # Items of atomic lists have no oldSelf (the API server pairs only list-map items).
            yield from _cel_errors(schema["items"], item, None, _join(path, index))
