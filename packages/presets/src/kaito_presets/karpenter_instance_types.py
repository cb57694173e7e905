"""The SKU catalog as an instance-type list for Karpenter's kwok provider.

Why: upstream Karpenter's kwok provider (``sigs.k8s.io/karpenter/kwok``) launches a NodeClaim only
if its ``node.kubernetes.io/instance-type`` requirement names a type from its list, and it gives
the Node that type's resources as allocatable. Its built-in list has 144 CPU-only types; its
``INSTANCE_TYPES_FILE_PATH`` replaces them with a JSON list. Generating that list from this
catalog offers exactly our GPU SKUs, with the same CPU, memory and ``nvidia.com/gpu`` a node of
the SKU has everywhere else in the project (:func:`kaito_presets.node_shape.gpu_node_shape`).

The JSON shape is the provider's ``InstanceTypeOptions`` (``kwok/cloudprovider/helpers.go`` at
v1.14.1): ``name``, ``offerings`` (``Price``, ``Available`` and ``Requirements``, which must name
``karpenter.sh/capacity-type`` and ``topology.kubernetes.io/zone``), ``architecture``,
``operatingSystems`` and ``resources``.

CLI: ``python -m kaito_presets.karpenter_instance_types [--cloud azure] [--exclude SKU]...``
prints the list.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from kaito_presets.node_shape import gpu_node_shape
from kaito_presets.skus import Cloud, GpuSku, all_skus

__all__ = ["DEFAULT_ZONES", "catalog_instance_types", "instance_type", "karpenter_instance_types"]

CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"
ZONE_KEY = "topology.kubernetes.io/zone"
DEFAULT_ZONES = ("kwok-zone-a",)
DEFAULT_CAPACITY_TYPES = ("on-demand",)


def instance_type(
    sku: GpuSku,
    *,
    zones: Sequence[str] = DEFAULT_ZONES,
    capacity_types: Sequence[str] = DEFAULT_CAPACITY_TYPES,
) -> dict[str, Any]:
    """One SKU as an instance type: one offering per zone and capacity type, at its list price."""
    if not zones or not capacity_types:
        raise ValueError("an instance type needs at least one zone and one capacity type")
    offerings = [
        {
            "Price": sku.price_per_hour_usd,
            "Available": True,
            "Requirements": [
                {"key": CAPACITY_TYPE_KEY, "operator": "In", "values": [capacity_type]},
                {"key": ZONE_KEY, "operator": "In", "values": [zone]},
            ],
        }
        for capacity_type in capacity_types
        for zone in zones
    ]
    return {
        "name": sku.name,
        "offerings": offerings,
        "architecture": "amd64",
        "operatingSystems": ["linux"],
        "resources": dict(gpu_node_shape(sku).capacity),
    }


def karpenter_instance_types(
    skus: Iterable[GpuSku],
    *,
    zones: Sequence[str] = DEFAULT_ZONES,
    capacity_types: Sequence[str] = DEFAULT_CAPACITY_TYPES,
) -> list[dict[str, Any]]:
    """The instance-type list for ``skus``, sorted by name (stable file content)."""
    by_name = {sku.name: sku for sku in skus}
    return [
        instance_type(by_name[name], zones=zones, capacity_types=capacity_types)
        for name in sorted(by_name)
    ]


def catalog_instance_types(
    *,
    cloud: Cloud | None = None,
    exclude: Iterable[str] = (),
    zones: Sequence[str] = DEFAULT_ZONES,
) -> list[dict[str, Any]]:
    """Every orderable catalog SKU (of ``cloud``, if given) except ``exclude`` (names compared
    case-insensitively, as the catalog looks them up)."""
    skipped = {name.lower() for name in exclude}
    skus = [
        sku for sku in all_skus(cloud, include_retired=False) if sku.name.lower() not in skipped
    ]
    return karpenter_instance_types(skus, zones=zones)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kaito_presets.karpenter_instance_types",
        description="Print the SKU catalog as INSTANCE_TYPES_FILE_PATH JSON for Karpenter's kwok.",
    )
    parser.add_argument("--cloud", choices=["azure", "aws"], help="only this cloud's SKUs")
    parser.add_argument("--exclude", action="append", default=[], metavar="SKU")
    parser.add_argument("--zone", action="append", default=[], help=f"default {DEFAULT_ZONES[0]}")
    args = parser.parse_args(argv)
    types = catalog_instance_types(
        cloud=args.cloud, exclude=args.exclude, zones=tuple(args.zone) or DEFAULT_ZONES
    )
    sys.stdout.write(json.dumps(types, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
