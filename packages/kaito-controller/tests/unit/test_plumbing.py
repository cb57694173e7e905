"""Small parts: drift detection, the work queue, certificates, admission, the kind table."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kaito_controller.engine.queue import WorkQueue
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.k8s.resources import NODECLAIM, POD, kind_of
from kaito_controller.reconcile.drift import is_subset, needs_apply, stamp
from kaito_controller.reconcile.observed import Observed
from kaito_controller.settings import ControllerSettings
from kaito_controller.webhook.admission import admission_errors
from kaito_controller.webhook.certs import ca_bundle, generate, needs_rotation
from kaito_controller.webhook.server import CertManager

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_paths_of_namespaced_and_cluster_kinds() -> None:
    assert POD.object_path("p", "ns") == "/api/v1/namespaces/ns/pods/p"
    assert NODECLAIM.object_path("c", None) == "/apis/karpenter.sh/v1/nodeclaims/c"
    assert (
        kind_of("apps/v1", "Deployment").collection_path("ns")
        == "/apis/apps/v1/namespaces/ns/deployments"
    )
    with pytest.raises(ValueError, match="namespace is required"):
        POD.object_path("p", None)
    with pytest.raises(KeyError, match="not in the controller's table"):
        kind_of("v1", "Secretive")


def test_subset_ignores_server_defaults_but_not_changed_values() -> None:
    want = {"spec": {"ports": [{"port": 80}]}}
    assert is_subset(want, {"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "x"}})
    assert not is_subset(want, {"spec": {"ports": [{"port": 81}]}})
    assert not is_subset(want, {"spec": {"ports": [{"port": 80}, {"port": 81}]}})


def test_needs_apply_on_missing_changed_or_edited_objects() -> None:
    cm = stamp(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    )
    assert needs_apply(cm, Observed())
    same = Observed(configmaps=(cm,))
    assert not needs_apply(cm, same)
    edited = Observed(configmaps=({**cm, "data": {"k": "edited"}},))
    assert needs_apply(cm, edited)
    changed = stamp({**cm, "data": {"k": "new"}, "metadata": {"name": "c"}})
    assert needs_apply(changed, same)


async def test_queue_dedupes_and_requeues_keys_added_while_active() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    assert len(q) == 1
    key = await q.get()
    q.add("a")  # while a worker holds it
    assert len(q) == 0
    q.done(key)
    assert len(q) == 1
    await q.get()
    q.done("a")
    q.add_after("b", 0.01)
    q.add_after("b", 5)  # the earlier one wins
    assert await asyncio.wait_for(q.get(), 1) == "b"
    q.close()


def test_certificate_covers_hosts_and_rotates_before_expiry() -> None:
    bundle = generate(["svc.ns.svc", "127.0.0.1"], now=T0, days=10)
    assert set(bundle.sans) == {"svc.ns.svc", "127.0.0.1"}
    renew = timedelta(days=3)
    assert needs_rotation(bundle, ["svc.ns.svc"], now=T0, renew_before=renew) is None
    assert "expires" in (
        needs_rotation(bundle, ["svc.ns.svc"], now=T0 + timedelta(days=8), renew_before=renew) or ""
    )
    assert "does not cover" in (needs_rotation(bundle, ["other"], now=T0, renew_before=renew) or "")
    assert needs_rotation(None, ["x"], now=T0, renew_before=renew) == "no certificate yet"
    new = generate(["svc.ns.svc"], now=T0)
    assert ca_bundle(new, bundle) == new.ca_pem + bundle.ca_pem
    with pytest.raises(ValueError, match="hosts"):
        generate([], now=T0)


async def test_cert_manager_publishes_persists_and_rotates(tmp_path: Any) -> None:
    client = MemoryKubeClient()
    client.put({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "validation.workspace.kaito.sh"}, "webhooks": [{"name": "w", "clientConfig": {"url": "https://127.0.0.1:9443"}}]})  # fmt: skip
    client.put(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert", "namespace": "kw"}}
    )
    settings = ControllerSettings(webhook_cert_dir=str(tmp_path), webhook_cert_secret="cert", release_namespace="kw",
                                  webhook_hosts=["127.0.0.1"], webhook_cert_days=10, webhook_renew_before_days=3)  # fmt: skip
    now = [T0]
    mgr = CertManager(client, settings, clock=lambda: now[0])
    first = await mgr.ensure()
    vwc = client.find("ValidatingWebhookConfiguration", "validation.workspace.kaito.sh")
    assert base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"]) == first.ca_pem  # type: ignore[index]
    assert (tmp_path / "tls.crt").read_bytes() == first.cert_pem
    # A restart reuses the persisted certificate.
    again = await CertManager(client, settings, clock=lambda: now[0]).ensure()
    assert again.cert_pem == first.cert_pem
    now[0] = T0 + timedelta(days=8)
    rotated = await mgr.ensure()
    assert rotated.cert_pem != first.cert_pem
    published = base64.b64decode(
        client.find("ValidatingWebhookConfiguration", "validation.workspace.kaito.sh")["webhooks"][
            0
        ]["clientConfig"]["caBundle"]
    )  # type: ignore[index]
    assert published == rotated.ca_pem + first.ca_pem  # both trusted during the switch


def test_admission_accepts_the_quick_starts_and_names_the_bad_field(
    example: Callable[..., dict[str, Any]],
) -> None:
    good = example("phi-3-mini-inference.yaml")
    assert admission_errors(good, None, nap_enabled=True) == []
    assert admission_errors(example("phi-3-qlora-tuning.yaml"), None, nap_enabled=True) == []
    bad = example("phi-3-mini-inference.yaml")
    bad["inference"]["preset"]["name"] = "no-such-model"
    (err,) = admission_errors(bad, None, nap_enabled=True)
    assert err.startswith("inference.preset.name")
    both = example("phi-3-mini-inference.yaml")
    both["tuning"] = example("phi-3-qlora-tuning.yaml")["tuning"]
    assert any(
        e.startswith("tuning: the Workspace has both inference and tuning")
        for e in admission_errors(both, None, nap_enabled=True)
    )
    neither = example("phi-3-mini-inference.yaml")
    del neither["inference"]
    assert any(
        e.startswith("inference: the Workspace has neither inference nor tuning")
        for e in admission_errors(neither, None, nap_enabled=True)
    )
    moved = example("phi-3-mini-inference.yaml")
    moved["resource"]["instanceType"] = "Standard_NC24ads_A100_v4"
    assert any("instanceType" in e for e in admission_errors(moved, good, nap_enabled=True))
