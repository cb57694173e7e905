"""NodeClaim parsing: the facts providers need, and errors that name the field."""

from __future__ import annotations

import pytest
from claimfactory import nodeclaim
from kaito_gpu_provisioner.azure.pools import aks_taint
from kaito_gpu_provisioner.claims import (
    is_managed,
    parse_nodeclaim,
    parse_quantity,
    required_instance_type,
    storage_bytes,
)
from kaito_gpu_provisioner.provisioner import InvalidNodeClaim


def test_parses_controller_nodeclaim() -> None:
    claim = parse_nodeclaim(nodeclaim())
    assert required_instance_type(claim) == "Standard_NC6s_v3"
    assert storage_bytes(claim) == 120 * 2**30
    assert aks_taint(claim.taints[0]) == "sku=gpu:NoSchedule"
    assert claim.labels["karpenter.sh/nodepool"] == "kaito"
    assert not claim.deleting


def test_missing_instance_type_names_the_field() -> None:
    claim = parse_nodeclaim(nodeclaim(sku=None))
    with pytest.raises(InvalidNodeClaim, match=r"spec\.requirements"):
        _ = required_instance_type(claim)


@pytest.mark.parametrize("storage", [None, "0", "abc"])
def test_bad_storage_names_the_field(storage: str | None) -> None:
    # "abc" is refused while parsing (kaito_api's Quantity), None and "0" when sized.
    with pytest.raises(InvalidNodeClaim, match=r"spec\.resources\.requests\.storage"):
        storage_bytes(parse_nodeclaim(nodeclaim(storage=storage)))


def test_quantities() -> None:
    assert parse_quantity("1Ti", "f") == 2**40
    assert parse_quantity("500G", "f") == 500 * 10**9


def test_managed_only_kaito_claims() -> None:
    assert is_managed(nodeclaim())
    foreign = nodeclaim()
    foreign["metadata"]["labels"] = {}
    foreign["spec"]["nodeClassRef"] = {"group": "karpenter.azure.com", "kind": "AKSNodeClass"}
    assert not is_managed(foreign)
