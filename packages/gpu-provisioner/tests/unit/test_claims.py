"""NodeClaim parsing: the facts providers need, and errors that name the field."""

from __future__ import annotations

import pytest
from claimfactory import nodeclaim
from kaito_gpu_provisioner.claims import NodeClaimView, is_managed, parse_quantity
from kaito_gpu_provisioner.provisioner import InvalidNodeClaim


def test_parses_controller_nodeclaim() -> None:
    claim = NodeClaimView.from_body(nodeclaim())
    assert claim.instance_type == "Standard_NC6s_v3"
    assert claim.storage_bytes() == 120 * 2**30
    assert claim.taints[0].to_aks() == "sku=gpu:NoSchedule"
    assert claim.labels["karpenter.sh/nodepool"] == "kaito"
    assert not claim.deleting


def test_missing_instance_type_names_the_field() -> None:
    claim = NodeClaimView.from_body(nodeclaim(sku=None))
    with pytest.raises(InvalidNodeClaim, match=r"spec\.requirements"):
        _ = claim.instance_type


@pytest.mark.parametrize("storage", [None, "0", "abc"])
def test_bad_storage_names_the_field(storage: str | None) -> None:
    claim = NodeClaimView.from_body(nodeclaim(storage=storage))
    with pytest.raises(InvalidNodeClaim, match=r"spec\.resources\.requests\.storage"):
        claim.storage_bytes()


def test_quantities() -> None:
    assert parse_quantity("1Ti", "f") == 2**40
    assert parse_quantity("500G", "f") == 500 * 10**9


def test_managed_only_kaito_claims() -> None:
    assert is_managed(nodeclaim())
    foreign = nodeclaim()
    foreign["metadata"]["labels"] = {}
    foreign["spec"]["nodeClassRef"] = {"group": "karpenter.azure.com", "kind": "AKSNodeClass"}
    assert not is_managed(foreign)
