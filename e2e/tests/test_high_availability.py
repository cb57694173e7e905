"""Two replicas of each operator on the local cluster: one leader each, failover within the lease.

Module flow: both charts are installed with 0 replicas (KWOK runs no containers); two
controllers and two KWOK provisioners run as processes with their charts' ServiceAccount tokens
(so the Lease RBAC is the chart's), leader election on with short timings. The webhook config
points at a TCP pass-through that reaches whichever controller replica is up (the Service's job
in a cluster), so admission works only if both replicas serve the shared certificate.

Covers: exactly one leader per operator; SIGKILL of the controller leader mid-reconcile and of
the provisioner leader mid-launch, repeatedly, with the other replica taking over within the
lease time and no duplicate NodeClaim, Job or Node; Workspace creates keep succeeding while a
controller replica is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_controller.testing import ControllerProcess, free_port
from kaito_e2e.charts import Release, operators_as_processes
from kaito_e2e.failover_proxy import FailoverProxy
from kaito_e2e.kube import wait_until
from kaito_e2e.workspaces import delete_all_workspaces
from kaito_gpu_provisioner.testing.e2e import get_json
from kaito_gpu_provisioner.testing.runner import ProvisionerProcess

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
RELEASE = RELEASE_NS = "kaito-workspace-ha"  # contains the chart name: fullname = release
PROV_RELEASE = PROV_NS = "gpu-provisioner-ha"
LEASE, RENEW, RETRY = 6, 4, 1  # seconds: failover within LEASE + RETRY after a leader dies
TAKEOVER_BUDGET = LEASE + 2 * RETRY + 3  # + process start and API latency on a busy machine
Kubectl = Callable[..., Any]


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return c
    return {}


class Replicas:
    """Two processes of one operator; knows which one holds the Lease."""

    def __init__(self, kubectl: Kubectl, lease_ns: str, lease_name: str, procs: list[Any]) -> None:
        self.kubectl, self.lease_ns, self.lease_name = kubectl, lease_ns, lease_name
        self.procs = procs

    def holder(self) -> str:
        lease = get_json(self.kubectl, "lease", self.lease_name, "-n", self.lease_ns)
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""

    def leader(self) -> Any:
        holder = wait_until(self.holder, timeout=TAKEOVER_BUDGET * 2, what=f"{self.lease_name}")
        return next(p for p, name in zip(self.procs, self.names(), strict=True) if name == holder)

    def names(self) -> list[str]:
        return [p.env[IDENTITY[type(p)]] for p in self.procs]

    def kill_leader_and_time_takeover(self) -> float:
        """SIGKILL the leader; return seconds until the other replica holds the Lease."""
        old = self.leader()
        old_name = self.holder()
        old.stop(kill=True)
        t0 = time.monotonic()
        wait_until(
            lambda: self.holder() not in ("", old_name),
            timeout=TAKEOVER_BUDGET * 2,
            what=f"another replica to take {self.lease_name} over from {old_name}",
            interval=0.2,
        )
        took = time.monotonic() - t0
        old.start()  # back as a follower, as the kubelet would restart it
        return took


IDENTITY = {
    ControllerProcess: "KAITO_CONTROLLER_POD_NAME",
    ProvisionerProcess: "KAITO_PROVISIONER_LEADER_ELECTION__IDENTITY",
}


@pytest.fixture(scope="module")
def stack(
    kubectl: Kubectl,
    helm: Callable[..., Any],
    kube_config_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("ha-e2e")
    port = free_port()
    controller = Release(
        RELEASE, RELEASE_NS, {"cloudProvider": "kwok", "webhook.url": f"https://127.0.0.1:{port}"}
    )
    provisioner = Release(PROV_RELEASE, PROV_NS, {"provider": "kwok"})
    with operators_as_processes(
        kubectl, helm, kube_config_path, work, controller=controller, provisioner=provisioner
    ) as (controller_kubeconfig, provisioner_kubeconfig):
        yield {
            "work": work,
            "webhook_port": port,
            "controller_kubeconfig": controller_kubeconfig,
            "provisioner_kubeconfig": provisioner_kubeconfig,
        }


@pytest.fixture(scope="module")
def controllers(stack: dict[str, Any], kubectl: Kubectl) -> Iterator[Replicas]:
    ports = [free_port(), free_port()]
    procs = []
    for i, webhook_port in enumerate(ports):
        env = {
            "KAITO_CONTROLLER_RELEASE_NAMESPACE": RELEASE_NS,
            "KAITO_CONTROLLER_CLOUD_PROVIDER": "kwok",
            "KAITO_CONTROLLER_WEBHOOK_LISTEN_ADDRESS": "127.0.0.1",
            "KAITO_CONTROLLER_WEBHOOK_PORT": str(webhook_port),
            "KAITO_CONTROLLER_WEBHOOK_HOSTS": '["127.0.0.1"]',
            "KAITO_CONTROLLER_WEBHOOK_CERT_DIR": str(stack["work"] / f"certs-{i}"),
            "KAITO_CONTROLLER_WEBHOOK_CERT_SECRET": f"{RELEASE}-webhook-cert",
            "KAITO_CONTROLLER_NOT_READY_REQUEUE_SECONDS": "1",
            "KAITO_CONTROLLER_LEADER_ELECTION_LEASE_NAME": RELEASE,
            "KAITO_CONTROLLER_LEADER_ELECTION_LEASE_DURATION_SECONDS": str(LEASE),
            "KAITO_CONTROLLER_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": str(RENEW),
            "KAITO_CONTROLLER_LEADER_ELECTION_RETRY_PERIOD_SECONDS": str(RETRY),
            "KAITO_CONTROLLER_POD_NAME": f"controller-{i}",
            "KAITO_CONTROLLER_LOG_FORMAT": "text",
        }
        procs.append(
            ControllerProcess(
                env,
                kubeconfig=stack["controller_kubeconfig"],
                log_path=stack["work"] / f"controller-{i}.log",
            )
        )
    with FailoverProxy(stack["webhook_port"], ports):
        for p in procs:
            p.start(timeout=120)
        yield Replicas(kubectl, RELEASE_NS, RELEASE, procs)
        for p in procs:
            p.stop()


@pytest.fixture(scope="module")
def provisioners(stack: dict[str, Any], kubectl: Kubectl) -> Iterator[Replicas]:
    procs = [
        ProvisionerProcess(
            {
                "KAITO_PROVISIONER_PROVIDER": "kwok",
                "KAITO_PROVISIONER_KWOK_DELAY_SECONDS": "3",  # a launch takes a while
                "KAITO_PROVISIONER_LEADER_ELECTION__ENABLED": "true",
                "KAITO_PROVISIONER_LEADER_ELECTION__NAMESPACE": PROV_NS,
                "KAITO_PROVISIONER_LEADER_ELECTION__LEASE_NAME": PROV_RELEASE,
                "KAITO_PROVISIONER_LEADER_ELECTION__LEASE_DURATION_SECONDS": str(LEASE),
                "KAITO_PROVISIONER_LEADER_ELECTION__RENEW_DEADLINE_SECONDS": str(RENEW),
                "KAITO_PROVISIONER_LEADER_ELECTION__RETRY_PERIOD_SECONDS": str(RETRY),
                "KAITO_PROVISIONER_LEADER_ELECTION__IDENTITY": f"provisioner-{i}",
            },
            kubeconfig=stack["provisioner_kubeconfig"],
            log_path=stack["work"] / f"provisioner-{i}.log",
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    yield Replicas(kubectl, PROV_NS, PROV_RELEASE, procs)
    for p in procs:
        p.stop()


@pytest.fixture(autouse=True)
def _delete_workspaces_while_the_controllers_run(
    namespace: str, kubectl: Kubectl, controllers: Replicas
) -> Iterator[None]:
    yield
    delete_all_workspaces(kubectl, namespace)


def apply_workspace(kubectl: Kubectl, ns: str, file: str, name: str) -> str:
    body = yaml.safe_load((QUICKSTART / file).read_text())
    body["metadata"]["name"] = name
    body["resource"]["labelSelector"]["matchLabels"] = {"apps": name}
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))
    return name


def claims_of(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    sel = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={ns}"
    return (get_json(kubectl, "nodeclaims", "-l", sel) or {}).get("items", [])


def nodes_of(kubectl: Kubectl, claim: str) -> list[dict[str, Any]]:
    """Nodes launched for ``claim`` (the KWOK provider's providerID names the claim)."""
    items = (get_json(kubectl, "nodes") or {}).get("items", [])
    return [n for n in items if (n.get("spec") or {}).get("providerID") == f"kwok://{claim}"]


def ready(kubectl: Kubectl, ns: str, name: str, type_: str, why: Callable[[], str]) -> Any:
    return wait_until(
        lambda: (
            (ws := get_json(kubectl, "workspace", name, "-n", ns))
            and condition(ws, type_).get("status") == "True"
            and ws
        ),
        timeout=120,
        what=f"{type_}=True on {ns}/{name}; {why()}",
    )


def logs(*groups: Replicas) -> Callable[[], str]:
    return lambda: "\n".join(p.log_tail(15) for g in groups for p in g.procs)


def test_each_operator_has_exactly_one_leader(
    controllers: Replicas, provisioners: Replicas
) -> None:
    for group in (controllers, provisioners):
        holder = wait_until(group.holder, timeout=30, what=f"a holder of {group.lease_name}")
        assert holder in group.names()
        time.sleep(3 * RETRY)  # renewals keep the same holder: no flapping
        assert group.holder() == holder


def test_killing_leaders_mid_flight_repeatedly_loses_nothing_and_duplicates_nothing(
    kubectl: Kubectl, namespace: str, controllers: Replicas, provisioners: Replicas
) -> None:
    takeovers: list[float] = []
    for round_ in range(3):
        name = apply_workspace(kubectl, namespace, "phi-3-mini-inference.yaml", f"ws-ha-{round_}")
        # The controller leader dies right after its first write (the NodeClaim)...
        wait_until(
            lambda name=name: claims_of(kubectl, namespace, name),
            timeout=60,
            what="the NodeClaim",
            interval=0.1,
        )
        takeovers.append(controllers.kill_leader_and_time_takeover())
        # ...and the provisioner leader while its node is still booting (3 s KWOK delay).
        takeovers.append(provisioners.kill_leader_and_time_takeover())
        ws = ready(kubectl, namespace, name, "WorkspaceReady", logs(controllers, provisioners))
        (claim,) = claims_of(kubectl, namespace, name)
        assert len(nodes_of(kubectl, claim["metadata"]["name"])) == 1
        assert condition(ws, "ResourceReady").get("status") == "True"
        deployments = get_json(
            kubectl, "deployments", "-n", namespace, "-l", f"kaito.sh/workspace={name}"
        )
        assert len((deployments or {}).get("items", [])) == 1
    print(f"\nleader takeovers (s): {', '.join(f'{t:.1f}' for t in takeovers)}")
    assert max(takeovers) <= TAKEOVER_BUDGET, takeovers


def test_tuning_job_is_created_once_across_a_leader_kill(
    kubectl: Kubectl, namespace: str, controllers: Replicas, provisioners: Replicas
) -> None:
    name = apply_workspace(kubectl, namespace, "phi-3-qlora-tuning.yaml", "ws-ha-tune")
    wait_until(
        lambda: claims_of(kubectl, namespace, name),
        timeout=60,
        what="the NodeClaim",
        interval=0.1,
    )
    controllers.kill_leader_and_time_takeover()
    ready(kubectl, namespace, name, "JobStarted", logs(controllers))
    controllers.kill_leader_and_time_takeover()  # and once more after the Job exists
    time.sleep(2 * RETRY)
    jobs = get_json(kubectl, "jobs", "-n", namespace, "-l", f"kaito.sh/workspace={name}")
    assert [j["metadata"]["name"] for j in (jobs or {}).get("items", [])] == [name]
    assert len(claims_of(kubectl, namespace, name)) == 1


def test_workspace_creates_succeed_while_a_controller_replica_is_down(
    kubectl: Kubectl, namespace: str, controllers: Replicas
) -> None:
    for proc in controllers.procs:  # each replica in turn is the one that is down
        proc.stop(kill=True)
        try:
            for i in range(3):
                name = f"ws-admit-{controllers.procs.index(proc)}-{i}"
                apply_workspace(kubectl, namespace, "phi-3-mini-inference.yaml", name)
                assert get_json(kubectl, "workspace", name, "-n", namespace) is not None
            bad = yaml.safe_load((QUICKSTART / "phi-3-mini-inference.yaml").read_text())
            bad["metadata"]["name"] = "ws-refused"
            bad["inference"]["preset"]["name"] = "no-such-model"
            out = kubectl(
                "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad), check=False
            )
            assert out.returncode != 0 and "unknown preset" in out.stderr, out.stderr
        finally:
            proc.start(timeout=120)
