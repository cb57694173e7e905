"""Node manifests for fake (KWOK) GPU nodes of any SKU in the presets catalog.

Why: the e2e suite, ``hack/gpu-node.sh`` and later the KWOK provisioner all need GPU nodes
that look real to the operator and the scheduler (``nvidia.com/gpu`` capacity, GPU Feature
Discovery-style labels, the instance-type label) without a GPU. This module only *builds*
dictionaries; creating them in a cluster is the caller's job. The API server keeps
``status`` on Node *create* (not on update), so the whole manifest goes in one POST.

CLI (used by ``hack/gpu-node.sh``)::

    python -m kaito_e2e.fake_nodes manifest --sku SKU --name NAME \\
        [--label k=v]... [--taint k=v:NoSchedule]...
    python -m kaito_e2e.fake_nodes gpu-count --sku SKU

``manifest`` prints the Node as JSON (kubectl accepts JSON); ``gpu-count`` prints the
SKU's GPU count.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

GPU_RESOURCE = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# Capacity every fake node gets unless the shape sets it (kwok keeps what we write).
DEFAULT_CAPACITY = {"pods": "110", "ephemeral-storage": "1Ti"}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class NodeShapeLike(Protocol):
    """What a node needs from a SKU: ``kaito_presets.node_shape.NodeShape`` satisfies it."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def capacity(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class Taint:
    """A node taint parsed from ``key[=value]:Effect``."""

    key: str
    value: str
    effect: str

    def to_dict(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is a valid Node name (DNS-1123 subdomain), else raise ValueError."""
    if not name or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValueError(
            f"name: {name!r} is not a valid node name "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    return name


def _validate_label_key(key: str, field: str) -> None:
    prefix, _, name = key.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _LABEL_NAME.match(name)
        or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
    ):
        raise ValueError(f"{field}: {key!r} is not a valid label key")


def _validate_label_value(key: str, value: str, field: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(f"{field}: value {value!r} of {key!r} is not a valid label value")


def parse_label(text: str) -> tuple[str, str]:
    """Parse ``key=value`` (as given to ``--label``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"label: {text!r} must look like key=value")
    _validate_label_key(key, "label")
    _validate_label_value(key, value, "label")
    return key, value


def parse_taint(text: str) -> Taint:
    """Parse ``key[=value]:Effect`` (as given to ``--taint`` and ``kubectl taint``)."""
    spec, sep, effect = text.rpartition(":")
    if not sep or not spec:
        raise ValueError(f"taint: {text!r} must look like key=value:Effect or key:Effect")
    if effect not in TAINT_EFFECTS:
        raise ValueError(
            f"taint: effect {effect!r} in {text!r} must be one of {', '.join(TAINT_EFFECTS)}"
        )
    key, _, value = spec.partition("=")
    _validate_label_key(key, "taint")
    _validate_label_value(key, value, "taint")
    return Taint(key=key, value=value, effect=effect)


def _gpu_count(capacity: Mapping[str, str]) -> int:
    raw = capacity.get(GPU_RESOURCE)
    if raw is None:
        raise ValueError(f"shape.capacity: missing {GPU_RESOURCE!r}; a GPU node needs it")
    try:
        count = int(str(raw))
    except ValueError:
        raise ValueError(f"shape.capacity[{GPU_RESOURCE!r}]: {raw!r} is not an integer") from None
    if count < 1:
        raise ValueError(f"shape.capacity[{GPU_RESOURCE!r}]: must be at least 1, got {count}")
    return count


def fake_gpu_node(
    name: str,
    shape: NodeShapeLike,
    *,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build a KWOK-managed Node with the shape's labels and capacity (= allocatable).

    Label precedence, lowest first: KWOK/OS defaults, the shape's labels, ``labels``.
    """
    validate_node_name(name)
    capacity = {**DEFAULT_CAPACITY, **{k: str(v) for k, v in shape.capacity.items()}}
    _gpu_count(capacity)
    extra = dict(labels or {})
    for key, value in extra.items():
        _validate_label_key(key, "labels")
        _validate_label_value(key, value, "labels")
    node_labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **{k: str(v) for k, v in shape.labels.items()},
        **extra,
    }
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {**(annotations or {}), KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE},
            "labels": node_labels,
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }
    if taints:
        node["spec"]["taints"] = [t.to_dict() for t in taints]
    return node


def gpu_status_patch(shape: NodeShapeLike) -> dict[str, Any]:
    """A merge patch for a node's *status* subresource adding the shape's GPU capacity.

    Used on real nodes (kind workers) that should advertise GPUs they do not have.
    """
    gpus = str(_gpu_count(shape.capacity))
    return {"status": {"capacity": {GPU_RESOURCE: gpus}, "allocatable": {GPU_RESOURCE: gpus}}}


def shape_for_sku(sku_name: str) -> NodeShapeLike:
    """Resolve a SKU name from the presets catalog to its node shape."""
    from kaito_presets.node_shape import gpu_node_shape
    from kaito_presets.skus import get_sku

    return gpu_node_shape(get_sku(sku_name))


def fake_gpu_node_for_sku(
    name: str,
    sku_name: str,
    *,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
) -> dict[str, Any]:
    """``fake_gpu_node`` for a SKU of the presets catalog."""
    return fake_gpu_node(name, shape_for_sku(sku_name), labels=labels, taints=taints)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kaito_e2e.fake_nodes", description="Fake (KWOK) GPU node manifests."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    manifest = sub.add_parser("manifest", help="print a fake GPU Node as JSON")
    manifest.add_argument("--sku", required=True, help="SKU name from the presets catalog")
    manifest.add_argument("--name", required=True, help="node name")
    manifest.add_argument("--label", action="append", default=[], metavar="K=V")
    manifest.add_argument("--taint", action="append", default=[], metavar="K=V:EFFECT")
    count = sub.add_parser("gpu-count", help="print the GPU count of a SKU")
    count.add_argument("--sku", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "gpu-count":
            print(_gpu_count(shape_for_sku(args.sku).capacity))
            return 0
        labels = dict(parse_label(item) for item in args.label)
        taints = [parse_taint(item) for item in args.taint]
        node = fake_gpu_node_for_sku(args.name, args.sku, labels=labels, taints=taints)
    except (ValueError, KeyError, LookupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    json.dump(node, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
