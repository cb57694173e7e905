"""The node agent's machine registry over a recording fake runtime (no root, no host changes):
idempotent creation, conflicts, index allocation, records that survive the agent, resumed and
serialised bring-up/tear-down, restarts of dead processes, GPU advertisement, and the CLI's
status command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kaito_gpu_provisioner.local.host import __main__ as cli
from kaito_gpu_provisioner.local.host.agent import Agent, Conflict, gpu_patch
from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.host.plan import plan_node
from kaito_gpu_provisioner.local.machines import Machine, MachinePhase, MachineSpec
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube
from localfakes import FakeRuntime, KubeNodeApi, agent_config, kubelet_node, until

T0 = datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)

MakeAgent = Callable[..., Agent]


def spec(name: str = "ws1", gpus: int = 1, **labels: str) -> MachineSpec:
    return MachineSpec(
        name=name,
        instance_type="Standard_NC6s_v3",
        labels={"kaito.sh/workspace": "phi-3", **labels},
        taints=[{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],  # type: ignore[list-item]
        gpus=gpus,
    )


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return agent_config(tmp_path)


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
async def make(
    config: AgentConfig, runtime: FakeRuntime, kube: MemoryKube
) -> AsyncIterator[MakeAgent]:
    def factory(cfg: AgentConfig | None = None, **kwargs: Any) -> Agent:
        kwargs.setdefault("node_api", KubeNodeApi(kube))
        kwargs.setdefault("clock", lambda: T0)
        return Agent(cfg or config, runtime, **kwargs)  # type: ignore[arg-type]

    yield factory
    # Let the background work of the test finish: no thread or task outlives it.
    for gate in (runtime.start_gate, runtime.stop_gate):
        if gate is not None:
            gate.set()
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=10)


async def running(agent: Agent, name: str = "ws1") -> Machine:
    await until(
        lambda: (m := agent.get(name)) is not None and m.phase is MachinePhase.RUNNING,
        what=f"{name} running",
    )
    machine = agent.get(name)
    assert machine is not None
    return machine


async def gone(agent: Agent, name: str = "ws1") -> None:
    await until(lambda: agent.get(name) is None, what=f"{name} deleted")


# --- creation -----------------------------------------------------------------------


async def test_put_records_the_machine_and_brings_it_up(
    make: MakeAgent, runtime: FakeRuntime, config: AgentConfig
) -> None:
    agent = make()
    machine, created = await agent.put(spec())
    assert created
    assert (machine.phase, machine.index) == (MachinePhase.STARTING, 0)
    assert (machine.node_ip, machine.pod_cidr) == ("198.18.127.10", "198.18.0.0/24")
    assert machine.created_at == T0
    record = config.nodes_dir / "ws1" / "machine.json"
    assert Machine.model_validate_json(record.read_text()) == machine
    up = await running(agent)
    assert up.message == ""
    assert runtime.count("start", "ws1") == 1
    assert Machine.model_validate_json(record.read_text()).phase is MachinePhase.RUNNING


async def test_put_is_idempotent_by_name(make: MakeAgent, runtime: FakeRuntime) -> None:
    agent = make()
    first, created = await agent.put(spec())
    await running(agent)
    again, created_again = await agent.put(spec())
    assert created and not created_again
    assert again.index == first.index and again.phase is MachinePhase.RUNNING
    assert runtime.count("start") == 1
    assert [m.name for m in agent.list()] == ["ws1"]


async def test_another_spec_for_the_same_name_conflicts(make: MakeAgent) -> None:
    agent = make()
    await agent.put(spec())
    with pytest.raises(Conflict, match="'ws1' exists with another spec"):
        await agent.put(spec(gpus=2))
    with pytest.raises(Conflict):
        await agent.put(spec(team="b"))
    assert agent.get("ws1") is not None and agent.get("ws1").spec == spec()  # type: ignore[union-attr]


async def test_indexes_are_the_lowest_free_and_reused(make: MakeAgent) -> None:
    agent = make()
    for name in ("a", "b", "c"):
        await agent.put(spec(name))
    await running(agent, "c")
    assert [(m.name, m.index) for m in agent.list()] == [("a", 0), ("b", 1), ("c", 2)]
    await agent.delete("b")
    await gone(agent, "b")
    machine, _ = await agent.put(spec("d"))
    assert (machine.index, machine.node_ip, machine.pod_cidr) == (
        1,
        "198.18.127.11",
        "198.18.1.0/24",
    )
    assert [m.name for m in agent.list()] == ["a", "d", "c"]  # by index


async def test_no_free_index_is_a_conflict(make: MakeAgent, tmp_path: Path) -> None:
    agent = make(agent_config(tmp_path, pod_cidr="198.18.0.0/23"))  # room for 2 nodes
    await agent.put(spec("a"))
    await agent.put(spec("b"))
    with pytest.raises(Conflict, match="all 2 node slots are in use"):
        await agent.put(spec("c"))
    assert agent.get("c") is None


async def test_start_failure_ends_failed_with_the_message(
    make: MakeAgent, runtime: FakeRuntime, config: AgentConfig
) -> None:
    runtime.fail_start["ws1"] = RuntimeError("containerd of ws1 exited:\nno space left")
    agent = make()
    await agent.put(spec())
    await until(lambda: agent.get("ws1").phase is MachinePhase.FAILED)  # type: ignore[union-attr]
    machine = agent.get("ws1")
    assert machine is not None
    assert machine.message == "containerd of ws1 exited:\nno space left"
    on_disk = Machine.model_validate_json((config.nodes_dir / "ws1/machine.json").read_text())
    assert on_disk.phase is MachinePhase.FAILED
    # a failed machine is not retried by the reconcile loop; deleting it cleans up
    await agent.reconcile_once()
    assert runtime.count("start") == 1
    await agent.delete("ws1")
    await gone(agent)
    assert runtime.stops == [("ws1", False)]


# --- deletion -----------------------------------------------------------------------


async def test_delete_stops_the_machine_then_forgets_it(
    make: MakeAgent, runtime: FakeRuntime
) -> None:
    agent = make()
    await agent.put(spec())
    await running(agent)
    machine = await agent.delete("ws1")
    assert machine is not None and machine.phase is MachinePhase.STOPPING
    await gone(agent)
    assert runtime.stops == [("ws1", False)]
    assert await agent.delete("ws1") is None
    assert await agent.delete("never-was") is None


async def test_delete_while_starting_waits_for_the_start_to_finish(
    make: MakeAgent, runtime: FakeRuntime
) -> None:
    runtime.start_gate = threading.Event()
    agent = make()
    await agent.put(spec())
    await until(lambda: runtime.count("start") == 1, what="start called")
    machine = await agent.delete("ws1")
    assert machine is not None and machine.phase is MachinePhase.STOPPING
    runtime.start_gate.set()
    await gone(agent)
    assert runtime.overlaps == []  # the tear-down never ran beside the bring-up
    assert runtime.events[-2:] == [("stop", "ws1"), ("stop-done", "ws1")]
    assert "ws1" not in runtime.running


async def test_repeated_deletes_tear_down_once(make: MakeAgent, runtime: FakeRuntime) -> None:
    agent = make()
    await agent.put(spec())
    await running(agent)
    runtime.stop_gate = threading.Event()
    await agent.delete("ws1")
    await until(lambda: runtime.count("stop") == 1, what="stop called")
    for _ in range(3):  # the provider calls DELETE on every termination step until 404
        again = await agent.delete("ws1")
        assert again is not None and again.phase is MachinePhase.STOPPING
    runtime.stop_gate.set()
    await gone(agent)
    assert runtime.overlaps == []
    assert runtime.count("stop") == 1


async def test_failed_stop_keeps_the_record_and_is_retried(
    make: MakeAgent, runtime: FakeRuntime
) -> None:
    agent = make()
    await agent.put(spec())
    await running(agent)
    runtime.fail_stop["ws1"] = RuntimeError("umount: target is busy")
    await agent.delete("ws1")
    await until(lambda: "stop failed" in agent.get("ws1").message)  # type: ignore[union-attr]
    machine = agent.get("ws1")
    assert machine is not None and machine.phase is MachinePhase.STOPPING
    assert "umount: target is busy" in machine.message
    await agent.reconcile_once()
    await gone(agent)
    assert runtime.count("stop") == 2


# --- records across agents ----------------------------------------------------------


async def test_a_new_agent_adopts_the_recorded_machines(
    make: MakeAgent, runtime: FakeRuntime
) -> None:
    first = make()
    await first.put(spec("a"))
    await first.put(spec("b"))
    await running(first, "b")
    await running(first, "a")
    second = make(clock=lambda: T0 + timedelta(hours=1))
    assert [(m.name, m.index, m.phase) for m in second.list()] == [
        ("a", 0, MachinePhase.RUNNING),
        ("b", 1, MachinePhase.RUNNING),
    ]
    assert second.get("a") == first.get("a")  # same created_at, addresses, spec
    _, created = await second.put(spec("a"))
    assert not created
    machine, created = await second.put(spec("c"))
    assert created and machine.index == 2
    assert runtime.count("start", "a") == 1


async def test_unreadable_records_are_skipped(make: MakeAgent, config: AgentConfig) -> None:
    first = make()
    await first.put(spec("good"))
    await running(first, "good")
    (config.nodes_dir / "broken").mkdir()
    (config.nodes_dir / "broken/machine.json").write_text("{not json")
    assert [m.name for m in make().list()] == ["good"]


def write_record(config: AgentConfig, name: str, index: int, phase: MachinePhase) -> None:
    plan = plan_node(config, name, index)
    machine = Machine(
        spec=spec(name),
        phase=phase,
        index=index,
        node_ip=plan.node_ip,
        pod_cidr=plan.pod_cidr,
        created_at=T0,
    )
    plan.root.mkdir(parents=True)
    plan.record.write_text(machine.model_dump_json())


async def test_interrupted_bring_up_and_tear_down_resume(
    make: MakeAgent, runtime: FakeRuntime, config: AgentConfig
) -> None:
    write_record(config, "half-up", 0, MachinePhase.STARTING)
    write_record(config, "half-down", 1, MachinePhase.STOPPING)
    agent = make()
    await agent.reconcile_once()
    await running(agent, "half-up")
    await gone(agent, "half-down")
    assert runtime.count("start", "half-up") == 1
    assert runtime.stops == [("half-down", False)]
    await agent.reconcile_once()  # nothing left to resume
    assert runtime.count("start") == 1


async def test_a_dead_process_is_restarted(make: MakeAgent, runtime: FakeRuntime) -> None:
    agent = make()
    await agent.put(spec())
    await running(agent)
    await agent.reconcile_once()
    assert runtime.count("start") == 1  # all alive: nothing to do
    runtime.dead["ws1"] = {"kubelet"}
    await agent.reconcile_once()
    await until(lambda: runtime.count("start-done") == 2, what="restarted")
    assert agent.get("ws1").phase is MachinePhase.RUNNING  # type: ignore[union-attr]


async def test_delete_during_a_restart_waits_for_it(make: MakeAgent, runtime: FakeRuntime) -> None:
    agent = make()
    await agent.put(spec())
    await running(agent)
    runtime.dead["ws1"] = {"kubelet"}
    runtime.start_gate = threading.Event()
    round_ = asyncio.create_task(agent.reconcile_once())
    await until(lambda: runtime.count("start") == 2, what="restart called")
    await agent.delete("ws1")
    runtime.start_gate.set()
    await round_
    await until(lambda: runtime.count("start-done") == 2, what="restart finished")
    await gone(agent)
    assert runtime.overlaps == []
    assert runtime.events[-2:] == [("stop", "ws1"), ("stop-done", "ws1")]


async def test_reconcile_goes_on_with_other_machines_when_one_fails(
    make: MakeAgent, runtime: FakeRuntime, kube: MemoryKube
) -> None:
    def node_api(plan: Any) -> Any:
        if plan.name == "a":
            raise RuntimeError("kubeconfig of a is half written")
        return KubeNodeApi(kube)

    agent = make(node_api=node_api)
    await agent.put(spec("a"))
    await agent.put(spec("b"))
    await running(agent, "a")
    await running(agent, "b")
    kube.nodes["b"] = kubelet_node("b", spec("b"))
    await agent.reconcile_once()
    assert kube.nodes["b"]["status"]["capacity"]["nvidia.com/gpu"] == "1"
    runtime.dead["b"] = {"kube-proxy"}
    await agent.reconcile_once()
    await until(lambda: runtime.count("start-done", "b") == 2, what="b restarted")


async def test_power_off_keeps_records_and_disks(
    make: MakeAgent, runtime: FakeRuntime, config: AgentConfig
) -> None:
    write_record(config, "up", 0, MachinePhase.RUNNING)
    write_record(config, "leaving", 1, MachinePhase.STOPPING)
    write_record(config, "stuck", 2, MachinePhase.RUNNING)
    runtime.fail_stop["stuck"] = RuntimeError("device busy")
    agent = make()
    assert await agent.power_off_all() == ["stuck"]
    assert sorted(runtime.stops) == [("leaving", False), ("stuck", True), ("up", True)]
    assert sorted(agent.machines) == ["stuck", "up"]
    assert agent.get("up").phase is MachinePhase.RUNNING  # type: ignore[union-attr]


# --- GPU advertisement --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "gpus", "patch"),
    [
        ({"capacity": {"cpu": "2"}}, 1, {"status": {"capacity": {"nvidia.com/gpu": "1"}}}),
        (
            {"capacity": {"nvidia.com/gpu": "1"}},
            2,
            {"status": {"capacity": {"nvidia.com/gpu": "2"}}},
        ),
        ({"capacity": {"nvidia.com/gpu": "2"}}, 2, None),
        ({"capacity": {"nvidia.com/gpu": 2}}, 2, None),
        (None, 4, {"status": {"capacity": {"nvidia.com/gpu": "4"}}}),
        ({}, 0, None),
        ({"capacity": {"cpu": "2"}}, 0, None),
    ],
)
def test_gpu_patch_only_when_capacity_differs(
    status: dict[str, Any] | None, gpus: int, patch: dict[str, Any] | None
) -> None:
    assert gpu_patch(status, gpus) == patch


async def test_gpus_are_advertised_once_the_node_registered(
    make: MakeAgent, kube: MemoryKube
) -> None:
    node_api = KubeNodeApi(kube)
    agent = make(node_api=node_api)
    await agent.put(spec(gpus=2))
    await running(agent)
    await agent.reconcile_once()  # the kubelet has not registered yet: 404, nothing patched
    assert node_api.patches == []
    kube.nodes["ws1"] = kubelet_node("ws1", spec(gpus=2))
    await agent.reconcile_once()
    assert node_api.patches == [("ws1", {"status": {"capacity": {"nvidia.com/gpu": "2"}}})]
    assert kube.nodes["ws1"]["status"]["capacity"]["cpu"] == "2"  # a merge, not a replace
    await agent.reconcile_once()
    assert len(node_api.patches) == 1  # already advertised


async def test_no_gpu_advertisement_for_machines_without_gpus(
    make: MakeAgent, kube: MemoryKube
) -> None:
    node_api = KubeNodeApi(kube)
    agent = make(node_api=node_api)
    await agent.put(spec(gpus=0))
    await running(agent)
    kube.nodes["ws1"] = kubelet_node("ws1", spec(gpus=0))
    await agent.reconcile_once()
    assert node_api.calls == 0 and node_api.patches == []


async def test_no_advertisement_before_the_node_has_credentials(make: MakeAgent) -> None:
    asked: list[str] = []

    def no_credentials_yet(plan: Any) -> None:
        asked.append(plan.name)

    agent = make(node_api=no_credentials_yet)
    await agent.put(spec())
    await running(agent)
    await agent.reconcile_once()
    assert asked == ["ws1"]


async def test_an_api_error_while_advertising_is_not_fatal(
    make: MakeAgent, kube: MemoryKube, caplog: pytest.LogCaptureFixture
) -> None:
    from kubernetes.client.exceptions import ApiException

    class Failing(KubeNodeApi):
        def patch_node_status(self, name: str, patch: dict[str, Any]) -> None:
            raise ApiException(status=403, reason="Forbidden")

    agent = make(node_api=Failing(kube))
    await agent.put(spec())
    await running(agent)
    kube.nodes["ws1"] = kubelet_node("ws1", spec())
    await agent.reconcile_once()
    assert "GPU capacity: Forbidden" in caplog.text


async def test_the_loop_survives_a_failing_round(make: MakeAgent, runtime: FakeRuntime) -> None:
    agent = make()
    await agent.put(spec())
    await running(agent)
    calls = 0
    real_status = runtime.status

    def flaky(plan: Any) -> dict[str, int | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("proc went away")
        return real_status(plan)

    runtime.status = flaky  # type: ignore[method-assign]
    loop = asyncio.create_task(agent.run(interval=0))
    try:
        await until(lambda: calls >= 3, what="rounds after the failing one")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


# --- CLI ----------------------------------------------------------------------------


def test_status_lists_machines_and_fails_when_a_running_node_is_down(
    config: AgentConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_record(config, "ws1", 0, MachinePhase.RUNNING)
    path = tmp_path / "config.json"
    raw = json.loads(config.model_dump_json())
    raw["bootstrap_token"] = "abc123.0123456789abcdef"
    path.write_text(json.dumps(raw))
    assert cli.main(["status", "--config", str(path)]) == 1  # no pid files: every process DOWN
    out = capsys.readouterr().out
    assert "ws1" in out and "Running" in out and "198.18.127.10" in out
    assert "kubelet=DOWN" in out


def test_status_shows_a_failed_machines_message(
    config: AgentConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_record(config, "ws1", 0, MachinePhase.FAILED)
    record = config.nodes_dir / "ws1/machine.json"
    failed = Machine.model_validate_json(record.read_text()).model_copy(
        update={"message": "kubelet binary missing"}
    )
    record.write_text(failed.model_dump_json())
    path = tmp_path / "config.json"
    raw = json.loads(config.model_dump_json())
    raw["bootstrap_token"] = "abc123.0123456789abcdef"
    path.write_text(json.dumps(raw))
    assert cli.main(["status", "--config", str(path)]) == 0
    assert "kubelet binary missing" in capsys.readouterr().out


async def test_the_real_runtime_cannot_run_in_tests(config: AgentConfig) -> None:
    # Tests may run as root beside a live local cluster: conftest makes the real runtime refuse.
    agent = Agent(config, node_api=lambda plan: None)
    await agent.put(spec())
    await until(lambda: agent.get("ws1").phase is MachinePhase.FAILED)  # type: ignore[union-attr]
    assert "a test tried to change the host" in agent.get("ws1").message  # type: ignore[union-attr]
