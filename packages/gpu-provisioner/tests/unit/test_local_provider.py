"""The ``local`` provider's pure parts: the machine a NodeClaim asks for (SKU shape, claim
labels and taints, GPU count), the wire model's validation, the settings and the wiring."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from claimfactory import nodeclaim
from kaito_api.nodeclaim import NodeClaim
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.local.machines import Machine, MachinePhase, MachineSpec
from kaito_gpu_provisioner.local.provisioner import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    LocalNodeProvisioner,
    expected_capacity,
    machine_spec,
)
from kaito_gpu_provisioner.main import build_provisioner
from kaito_gpu_provisioner.provisioner import InvalidNodeClaim
from kaito_gpu_provisioner.settings import Settings
from kaito_gpu_provisioner.skus import shape_for
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube
from pydantic import ValidationError


def claim(**kwargs: object) -> NodeClaim:
    body = nodeclaim("ws1", **kwargs)  # type: ignore[arg-type]
    return parse_nodeclaim(body)


def with_startup_taint() -> NodeClaim:
    body = nodeclaim("ws1")
    body["spec"]["startupTaints"] = [
        {"key": "node.cilium.io/agent-not-ready", "effect": "NoExecute"}
    ]
    return parse_nodeclaim(body)


# --- machine_spec -------------------------------------------------------------------


def test_labels_are_sku_shape_nodepool_claim_instance_type_and_managed_by() -> None:
    shape = shape_for("Standard_NC6s_v3")
    assert shape is not None
    spec = machine_spec(claim())
    assert spec.labels == {
        **shape.labels,
        "kaito.sh/workspace": "phi-3",
        "kaito.sh/workspacenamespace": "default",
        "karpenter.sh/nodepool": "kaito",
        "node.kubernetes.io/instance-type": "Standard_NC6s_v3",
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    assert spec.labels["nvidia.com/gpu.product"] == "Tesla-V100-PCIE-16GB"
    assert (spec.name, spec.instance_type) == ("ws1", "Standard_NC6s_v3")


def test_claim_labels_override_the_shape_but_not_instance_type_or_managed_by() -> None:
    spec = machine_spec(
        claim(
            extra_labels={
                "karpenter.sh/nodepool": "gpu-pool",
                "accelerator": "custom",
                "node.kubernetes.io/instance-type": "Standard_D4s_v3",
                MANAGED_BY_LABEL: "someone-else",
            }
        )
    )
    assert spec.labels["karpenter.sh/nodepool"] == "gpu-pool"
    assert spec.labels["accelerator"] == "custom"
    assert spec.labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert spec.labels[MANAGED_BY_LABEL] == MANAGED_BY


def test_the_nodepool_label_defaults_to_kaito() -> None:
    body = nodeclaim("ws1")
    del body["metadata"]["labels"]["karpenter.sh/nodepool"]
    assert machine_spec(parse_nodeclaim(body)).labels["karpenter.sh/nodepool"] == "kaito"


def test_taints_are_the_claims_taints_then_its_startup_taints() -> None:
    spec = machine_spec(with_startup_taint())
    assert [t.model_dump(exclude_none=True) for t in spec.taints] == [
        {"key": "sku", "value": "gpu", "effect": "NoSchedule"},
        {"key": "node.cilium.io/agent-not-ready", "effect": "NoExecute"},
    ]


@pytest.mark.parametrize(
    ("sku", "gpus"),
    [("Standard_NC6s_v3", 1), ("Standard_NC12s_v3", 2), ("Standard_NC24s_v3", 4)],
)
def test_gpus_are_the_skus_gpu_count(sku: str, gpus: int) -> None:
    spec = machine_spec(claim(sku=sku))
    assert spec.gpus == gpus
    assert expected_capacity(spec, dict(shape_for(sku).capacity)) == {  # type: ignore[union-attr]
        "nvidia.com/gpu": str(gpus)
    }


def test_expected_capacity_promises_only_gpus() -> None:
    spec = machine_spec(claim())
    capacity = expected_capacity(spec, {"cpu": "6", "memory": "112Gi", "nvidia.com/gpu": "1"})
    assert capacity == {"nvidia.com/gpu": "1"}
    no_gpu = MachineSpec(name="cpu1", instance_type="Standard_D4s_v3")
    assert expected_capacity(no_gpu, {"cpu": "4"}) == {}


def test_unknown_sku_is_an_invalid_claim_naming_requirements() -> None:
    with pytest.raises(InvalidNodeClaim, match=r"^spec\.requirements: .*'Standard_D4s_v3'") as info:
        machine_spec(claim(sku="Standard_D4s_v3"))
    assert info.value.retryable is False


def test_claim_without_instance_type_is_invalid() -> None:
    with pytest.raises(InvalidNodeClaim, match=r"spec\.requirements"):
        machine_spec(claim(sku=None))


def test_claim_name_too_long_for_a_machine_is_invalid() -> None:
    with pytest.raises(InvalidNodeClaim, match="cannot be a local machine"):
        machine_spec(parse_nodeclaim(nodeclaim("w" * 41)))


# --- wire model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Not_A_DNS_Label"),
        ("name", "a" * 41),
        ("gpus", -1),
        ("gpus", 17),
        ("instance_type", ""),
        ("labels", {"bad key!": "x"}),
        ("taints", [{"key": "k", "effect": "Sometimes"}]),
        ("surprise", 1),
    ],
)
def test_machine_spec_rejects_bad_fields(field: str, value: object) -> None:
    raw = {"name": "ws1", "instance_type": "Standard_NC6s_v3", field: value}
    with pytest.raises(ValidationError, match=field):
        MachineSpec.model_validate(raw)


def test_machine_spec_is_frozen_and_round_trips_as_json() -> None:
    spec = machine_spec(with_startup_taint())
    assert MachineSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError):
        spec.gpus = 3  # type: ignore[misc]


def test_machine_reports_its_provider_id() -> None:
    machine = Machine(
        spec=MachineSpec(name="ws1", instance_type="Standard_NC6s_v3"),
        phase=MachinePhase.RUNNING,
        index=0,
        node_ip="198.18.127.10",
        pod_cidr="198.18.0.0/24",
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    assert (machine.name, machine.provider_id) == ("ws1", "local://ws1")
    assert Machine.model_validate_json(machine.model_dump_json()) == machine


# --- settings and wiring ------------------------------------------------------------


def test_local_settings_from_env_strip_the_token_and_hide_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAITO_PROVISIONER_PROVIDER", "Local")
    monkeypatch.setenv("KAITO_PROVISIONER_LOCAL__AGENT_URL", "http://198.18.127.1:5050")
    monkeypatch.setenv("KAITO_PROVISIONER_LOCAL__TOKEN", "s3cret-token\n")  # --from-file Secret
    settings = Settings()
    assert settings.provider == "local"
    assert settings.local.agent_url == "http://198.18.127.1:5050"
    assert settings.local.token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(settings)
    assert "s3cret-token" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("local", "field"),
    [
        ({}, r"local\.agent_url"),
        ({"agent_url": "198.18.127.1:5050", "token": "t"}, r"local\.agent_url"),
        ({"agent_url": "http://198.18.127.1:5050"}, r"local\.token"),
        ({"agent_url": "http://198.18.127.1:5050", "token": " \n"}, r"local\.token"),
    ],
)
def test_local_provider_requires_url_and_token(local: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(provider="local", local=local)  # type: ignore[arg-type]


def test_other_providers_need_no_local_settings() -> None:
    assert Settings(provider="kwok").local.agent_url == ""


async def test_build_provisioner_wires_the_local_provider() -> None:
    settings = Settings(
        provider="local",
        local={"agent_url": "http://127.0.0.1:1", "token": "t"},  # type: ignore[arg-type]
    )
    provisioner, closers = build_provisioner(settings, MemoryKube())
    assert isinstance(provisioner, LocalNodeProvisioner)
    assert provisioner.name == "local"
    assert len(closers) == 1
    await closers[0]()  # closing a client that never connected is fine
