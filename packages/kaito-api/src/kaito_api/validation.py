"""Catalog-free validation of a raw Workspace object, as a list of field errors.

The admission webhook and the catalog-aware validator in ``kaito_presets.validation`` start
here: :func:`validate_workspace_static` applies every rule that needs no model catalog (the
same rules the CRD enforces with its schema and CEL, plus what the CRD cannot see: an SSRF
guard on tuning URLs, the values of the annotations KAITO validates, and the selector
operators the controller can honour) and reports each failure with the JSON path of the field,
so callers can add their own errors to the same list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kaito_api import v1alpha1, v1beta1
from kaito_api.labels import (
    ANNOTATION_NODE_IMAGE_FAMILY,
    ANNOTATION_PERFORMANCE_MODE,
    ANNOTATION_USE_LOCAL_WEIGHTS,
    NODE_IMAGE_FAMILIES,
    PERFORMANCE_MODES,
)
from kaito_api.rules import FieldError, transition_errors

__all__ = [
    "FieldError",
    "StaticCheck",
    "WorkspaceInvalid",
    "annotation_field",
    "check_workspace_static",
    "field_errors_from_validation_error",
    "parse_workspace",
    "validate_workspace_static",
]

_WORKSPACE_CLASSES: dict[str, type[v1beta1.Workspace]] = {
    v1beta1.API_VERSION: v1beta1.Workspace,
    v1alpha1.API_VERSION: v1alpha1.Workspace,
}
_METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.google", "instance-data.ec2.internal", "localhost"}
)


class WorkspaceInvalid(ValueError):
    """A Workspace object failed validation; ``errors`` says which fields and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("invalid Workspace: " + "; ".join(str(e) for e in errors))


def parse_workspace(obj: Mapping[str, Any]) -> v1beta1.Workspace:
    """Parse a Workspace of either served version (v1alpha1 objects get the v1alpha1 class).

    Raises:
        WorkspaceInvalid: with the field errors, if the object is not a valid Workspace.
    """
    errors: list[FieldError] = []
    workspace = _parse(obj, errors)
    if workspace is None:
        raise WorkspaceInvalid(errors)
    return workspace


def validate_workspace_static(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    allow_private_urls: bool = False,
) -> list[FieldError]:
    """Every catalog-free problem with ``obj`` (empty when it is valid).

    Args:
        obj: The Workspace as a dict (a manifest, or what the API server returns).
        old: The stored object on update; enables the immutability rules.
        allow_private_urls: Accept tuning input URLs that point at loopback, private or
            link-local addresses or at cloud metadata hosts (off by default: SSRF guard).

    Returns:
        Field errors with JSON paths such as ``tuning.output.imagePushSecret``.
    """
    return check_workspace_static(obj, old, allow_private_urls=allow_private_urls).errors


class StaticCheck(NamedTuple):
    """What :func:`check_workspace_static` found, and the objects it parsed on the way.

    Attributes:
        errors: The field errors (as :func:`validate_workspace_static` returns them).
        workspace: ``obj`` parsed; None when it is not a valid Workspace.
        previous: ``old`` parsed; None when not given, not valid, or ``obj`` did not parse.
    """

    errors: list[FieldError]
    workspace: v1beta1.Workspace | None
    previous: v1beta1.Workspace | None


def check_workspace_static(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    allow_private_urls: bool = False,
) -> StaticCheck:
    """:func:`validate_workspace_static`, also returning the parsed objects.

    For callers that add their own checks (``kaito_presets.validation``), so that they need not
    parse ``obj`` and ``old`` a second time.
    """
    errors: list[FieldError] = []
    workspace = _parse(obj, errors)
    if workspace is None:
        return StaticCheck(errors, None, None)
    if not allow_private_urls:
        errors.extend(_private_url_errors(workspace))
    errors.extend(_annotation_errors(workspace))
    errors.extend(_selector_errors(workspace))
    previous = None if old is None else _parse(old, [])
    if previous is not None:
        errors.extend(transition_errors(workspace, previous))
    return StaticCheck(errors, workspace, previous)


def _parse(obj: Mapping[str, Any], errors: list[FieldError]) -> v1beta1.Workspace | None:
    api_version = obj.get("apiVersion", v1beta1.API_VERSION)
    cls = _WORKSPACE_CLASSES.get(api_version)
    if cls is None:
        errors.append(
            FieldError(
                "apiVersion",
                f"{api_version!r} is not a Workspace version: use "
                f"{v1beta1.API_VERSION} or {v1alpha1.API_VERSION}",
            )
        )
        return None
    try:
        return cls.model_validate(dict(obj))
    except ValidationError as err:
        errors.extend(field_errors_from_validation_error(err))
        return None


def field_errors_from_validation_error(err: ValidationError) -> list[FieldError]:
    """Turn pydantic errors into :class:`FieldError` with JSON paths and fix-it messages."""
    return [FieldError(_path(e["loc"]), _message(e)) for e in err.errors(include_url=False)]


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int) or "." in part or "/" in part:
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return (
            f"unknown field {error['loc'][-1]!r}: remove it or fix its spelling (fields are "
            "camelCase, e.g. instanceType, imagePushSecret)"
        )
    return error["msg"]


def _private_url_errors(workspace: v1beta1.Workspace) -> list[FieldError]:
    if workspace.tuning is None:
        return []
    return [
        FieldError(
            f"tuning.input.urls[{index}]",
            f"{url!r} points at a local, private or metadata address; use a public "
            "http(s) URL, or an image or volume for private data",
        )
        for index, url in enumerate(workspace.tuning.input.urls or ())
        if _is_private_host(urlsplit(url).hostname or "")
    ]


def _is_private_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _METADATA_HOSTS or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def annotation_field(key: str) -> str:
    """The JSON path that names annotation ``key`` in field errors."""
    return f"metadata.annotations[{key}]"


def _annotation_errors(workspace: v1beta1.Workspace) -> list[FieldError]:
    """The annotations KAITO validates, checked the same way (unknown values are refused,
    not ignored)."""
    annotations = workspace.metadata.annotations or {}
    errors: list[FieldError] = []
    family = annotations.get(ANNOTATION_NODE_IMAGE_FAMILY)
    if family is not None and family.strip().lower() not in NODE_IMAGE_FAMILIES:
        errors.append(
            FieldError(
                annotation_field(ANNOTATION_NODE_IMAGE_FAMILY),
                f"unsupported node image family {family!r}: use one of "
                f"{', '.join(NODE_IMAGE_FAMILIES)}, or remove the annotation for the chart's "
                "default (nodeImageFamily)",
            )
        )
    mode = annotations.get(ANNOTATION_PERFORMANCE_MODE)
    if mode is not None and mode not in PERFORMANCE_MODES:
        errors.append(
            FieldError(
                annotation_field(ANNOTATION_PERFORMANCE_MODE),
                f"{mode!r} is not a performance mode: use one of {', '.join(PERFORMANCE_MODES)}",
            )
        )
    local = annotations.get(ANNOTATION_USE_LOCAL_WEIGHTS)
    if local is not None and local not in ("true", "false"):
        errors.append(
            FieldError(
                annotation_field(ANNOTATION_USE_LOCAL_WEIGHTS),
                f'{local!r} must be "true" or "false"',
            )
        )
    elif local == "true":
        errors.append(
            FieldError(
                annotation_field(ANNOTATION_USE_LOCAL_WEIGHTS),
                "weights pre-populated on the node (/opt/kaito/models) are not supported: the "
                "server downloads the preset's weights into the node's weights cache; remove "
                'the annotation or set it to "false"',
            )
        )
    return errors


def _selector_errors(workspace: v1beta1.Workspace) -> list[FieldError]:
    """Selector requirements the controller cannot honour: it chooses, labels and pins nodes by
    label equality, so only ``In`` expressions are accepted (KAITO refuses the same ones)."""
    expressions = workspace.resource.label_selector.match_expressions or ()
    return [
        FieldError(
            f"resource.labelSelector.matchExpressions[{index}].operator",
            f"operator {req.operator} (key {req.key!r}) is not supported: a Workspace's nodes "
            "are chosen and labelled by label equality; use matchLabels, or an In expression",
        )
        for index, req in enumerate(expressions)
        if req.operator != "In"
    ]
