"""Unit tests for backend selection, the pin file parser and wait/predicate helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_e2e.cluster import Backend, choose_backend, read_versions
from kaito_e2e.kube import (
    WaitTimeout,
    node_is_schedulable,
    pod_is_running_and_ready,
    random_suffix,
    wait_node_schedulable,
    wait_until,
)


def _never() -> bool:
    raise AssertionError("docker must not be probed")


def test_explicit_kubeconfig_wins_without_probing_docker() -> None:
    env = {"KAITO_E2E_KUBECONFIG": "/k", "KAITO_E2E_KIND": "1"}
    assert choose_backend(env, _never) is Backend.EXTERNAL


def test_kind_when_asked_and_docker_works() -> None:
    assert choose_backend({"KAITO_E2E_KIND": "true"}, lambda: True) is Backend.KIND


def test_kind_without_docker_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="docker info"):
        choose_backend({"KAITO_E2E_KIND": "1"}, lambda: False)


def test_local_by_default() -> None:
    assert choose_backend({"KAITO_E2E_KIND": "0"}, _never) is Backend.LOCAL
    assert choose_backend({}, _never) is Backend.LOCAL


def test_read_versions(tmp_path: Path) -> None:
    pins = tmp_path / "versions.env"
    pins.write_text("# comment\n\nK8S_VERSION=v1.35.4\nHELM_VERSION = v4.2.4\n")
    assert read_versions(pins) == {"K8S_VERSION": "v1.35.4", "HELM_VERSION": "v4.2.4"}
    pins.write_text("K8S_VERSION v1\n")
    with pytest.raises(ValueError, match=r"versions\.env:1: expected KEY=value"):
        read_versions(pins)


def test_repo_pin_file_pins_every_tool() -> None:
    pins = read_versions()
    assert set(pins) >= {"K8S_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION"}
    assert pins["K8S_VERSION"].startswith("v1.")


def _node(ready: str, taints: list[str]) -> dict:
    return {
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready},
            ]
        },
        "spec": {"taints": [{"key": k, "effect": "NoSchedule"} for k in taints]},
    }


def test_node_is_schedulable() -> None:
    assert node_is_schedulable(_node("True", []))
    assert node_is_schedulable(
        _node("True", ["nvidia.com/gpu"])
    )  # other taints are the pod's business
    assert not node_is_schedulable(_node("True", ["node.kubernetes.io/not-ready"]))
    assert not node_is_schedulable(_node("False", []))
    assert not node_is_schedulable({})


def test_pod_is_running_and_ready() -> None:
    ready = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert pod_is_running_and_ready(ready)
    assert not pod_is_running_and_ready({"status": {"phase": "Pending", "conditions": []}})
    assert not pod_is_running_and_ready(
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_until_returns_first_truthy_value_and_tolerates_errors() -> None:
    clock = FakeClock()
    answers = iter([None, RuntimeError("flaky"), "done"])

    def probe() -> str | None:
        item = next(answers)
        if isinstance(item, Exception):
            raise item
        return item

    assert wait_until(probe, timeout=10, what="x", clock=clock, sleep=clock.sleep) == "done"
    assert clock.now == 1.0


def test_wait_until_times_out_naming_what_and_last_error() -> None:
    clock = FakeClock()

    def probe() -> None:
        raise RuntimeError("boom")

    with pytest.raises(
        WaitTimeout, match=r"waiting for the thing \(last error: RuntimeError\('boom'\)\)"
    ):
        wait_until(probe, timeout=2, what="the thing", clock=clock, sleep=clock.sleep)


def test_random_suffix_is_name_safe() -> None:
    values = {random_suffix() for _ in range(20)}
    assert len(values) > 1
    assert all(len(v) == 6 and v.isalnum() and v == v.lower() for v in values)


class FakeCore:
    """Stands in for CoreV1Api.read_node: the node becomes schedulable on the third read."""

    def __init__(self) -> None:
        self.reads = 0

    def read_node(self, name: str) -> dict:
        self.reads += 1
        return _node("True", [] if self.reads >= 3 else ["node.kubernetes.io/not-ready"])


def test_wait_node_schedulable_returns_the_node_once_untainted() -> None:
    core = FakeCore()
    node = wait_node_schedulable(core, "n", timeout=5, interval=0)  # type: ignore[arg-type]
    assert node_is_schedulable(node)
    assert core.reads == 3
