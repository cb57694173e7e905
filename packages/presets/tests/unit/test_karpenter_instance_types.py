"""The catalog as Karpenter kwok's INSTANCE_TYPES_FILE_PATH list: the provider's JSON shape,
every orderable SKU with its node shape's resources, offerings that carry the two keys Karpenter
requires, exclusion by name, and the CLI printing the same list."""

from __future__ import annotations

import json

import pytest
from kaito_presets.karpenter_instance_types import (
    CAPACITY_TYPE_KEY,
    ZONE_KEY,
    catalog_instance_types,
    instance_type,
    karpenter_instance_types,
    main,
)
from kaito_presets.node_shape import gpu_node_shape
from kaito_presets.skus import all_skus, get_sku


def test_one_instance_type_has_the_providers_fields_and_the_nodes_resources() -> None:
    sku = get_sku("Standard_NC6s_v3")
    it = instance_type(sku)
    assert set(it) == {"name", "offerings", "architecture", "operatingSystems", "resources"}
    assert it["name"] == "Standard_NC6s_v3"
    assert (it["architecture"], it["operatingSystems"]) == ("amd64", ["linux"])
    # One V100, 6 vCPUs, 112 GiB: the Azure spec of NC6s_v3, as every fake node of it has.
    assert it["resources"]["nvidia.com/gpu"] == "1"
    assert it["resources"]["cpu"] == "6" and it["resources"]["memory"] == "112Gi"
    assert it["resources"] == gpu_node_shape(sku).capacity
    json.dumps(it)  # plain JSON


def test_offerings_name_capacity_type_and_zone_for_each_pair() -> None:
    sku = get_sku("Standard_NC24ads_A100_v4")
    it = instance_type(sku, zones=("z1", "z2"), capacity_types=("on-demand", "spot"))
    pairs = set()
    for offering in it["offerings"]:
        assert offering["Price"] == sku.price_per_hour_usd and offering["Available"] is True
        reqs = {r["key"]: r for r in offering["Requirements"]}
        assert set(reqs) == {CAPACITY_TYPE_KEY, ZONE_KEY}
        assert all(r["operator"] == "In" and len(r["values"]) == 1 for r in reqs.values())
        pairs.add((reqs[CAPACITY_TYPE_KEY]["values"][0], reqs[ZONE_KEY]["values"][0]))
    assert pairs == {("on-demand", "z1"), ("on-demand", "z2"), ("spot", "z1"), ("spot", "z2")}
    with pytest.raises(ValueError, match="zone"):
        instance_type(sku, zones=())


def test_catalog_list_is_every_orderable_sku_sorted_and_gpu_bearing() -> None:
    types = catalog_instance_types()
    names = [t["name"] for t in types]
    orderable = {s.name for s in all_skus(include_retired=False)}
    assert names == sorted(orderable)
    assert not {s.name for s in all_skus() if s.retired} & set(names)
    for t in types:
        assert int(t["resources"]["nvidia.com/gpu"]) == get_sku(t["name"]).gpu_count >= 1


def test_cloud_filter_and_exclusion_by_name_ignoring_case() -> None:
    azure = catalog_instance_types(cloud="azure", exclude=["standard_nc24ADS_a100_v4"])
    names = {t["name"] for t in azure}
    assert "Standard_NC24ads_A100_v4" not in names and "Standard_NC6s_v3" in names
    assert all(get_sku(n).cloud == "azure" for n in names)
    assert len(names) == len(catalog_instance_types(cloud="azure")) - 1


def test_duplicates_collapse() -> None:
    sku = get_sku("Standard_NC6s_v3")
    assert [t["name"] for t in karpenter_instance_types([sku, sku])] == [sku.name]


def test_cli_prints_the_same_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cloud", "aws", "--zone", "us-east-1a"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == catalog_instance_types(cloud="aws", zones=("us-east-1a",))
    assert printed and all(
        o["Requirements"][1]["values"] == ["us-east-1a"] for t in printed for o in t["offerings"]
    )
