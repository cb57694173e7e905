"""Session and per-test fixtures for the e2e suite (documented in e2e/README.md).

Cluster selection (see kaito_e2e.cluster): KAITO_E2E_KUBECONFIG, else KAITO_E2E_KIND=1 with
pytest-kind, else the local process cluster from hack/local-cluster.sh, started once per
session and left running unless KAITO_E2E_TEARDOWN=1.

Stable fixture API for other test files: ``e2e_cluster``, ``kube_config_path``, ``kube_api``,
``core_v1``, ``namespace``, ``add_gpu_node``, ``kubectl``, ``helm``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from kaito_e2e import kube
from kaito_e2e.cluster import (
    Backend,
    Cluster,
    choose_backend,
    docker_works,
    find_tool,
    local_cluster_down,
    local_cluster_up,
    tools_bin,
)
from kaito_e2e.fake_nodes import Taint, fake_gpu_node, parse_taint, shape_for_sku
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

AddGpuNode = Callable[..., Any]


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _local_tools_missing(bin_dir: Path) -> bool:
    return not (bin_dir / "kube-apiserver").is_file() and shutil.which("go") is None


@pytest.fixture(scope="session")
def e2e_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The cluster under test plus kubectl/helm, chosen from the environment."""
    backend = choose_backend(os.environ, docker_works)
    bin_dir = tools_bin()
    kwok_proc = None
    if backend is Backend.EXTERNAL:
        kubeconfig = Path(os.environ["KAITO_E2E_KUBECONFIG"])
        if not kubeconfig.is_file():
            pytest.fail(f"KAITO_E2E_KUBECONFIG={kubeconfig} does not exist")
    elif backend is Backend.KIND:
        from kaito_e2e.kind import patch_fake_gpus, start_kwok

        kind = request.getfixturevalue("kind_cluster")
        kubeconfig = Path(kind.kubeconfig_path)
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        sku = os.environ.get("KAITO_E2E_KIND_GPU_SKU")
        if sku:  # real kind nodes advertise this SKU's GPUs
            names = [str(n.metadata.name) for n in core.list_node().items if n.metadata]
            patch_fake_gpus(core, shape_for_sku(sku), names)
        kwok_proc = start_kwok(kubeconfig, bin_dir, tmp_path_factory.mktemp("kwok") / "kwok.log")
    else:
        if _local_tools_missing(bin_dir):
            reason = f"no Go toolchain and no prebuilt tools in {bin_dir}; see hack/README.md"
            if _truthy("CI") or _truthy("KAITO_E2E_REQUIRED"):
                pytest.fail(reason)
            pytest.skip(reason)
        try:
            kubeconfig = local_cluster_up()
        except Exception:
            if _truthy("KAITO_E2E_TEARDOWN"):  # leave nothing behind, as promised
                local_cluster_down()
            raise
    helm_path = None
    with contextlib.suppress(FileNotFoundError):  # kubectl is required, helm only by helm tests
        helm_path = find_tool("helm", bin_dir)
    cluster = Cluster(
        backend=backend,
        kubeconfig=kubeconfig,
        kubectl_path=find_tool("kubectl", bin_dir),
        helm_path=helm_path,
    )
    if backend is Backend.LOCAL and helm_path is not None:
        # `make quickstart` leaves both charts running as pods (with their webhook) on the same
        # cluster; the suite starts from a cluster without them, as CI does.
        from kaito_e2e.deploy import remove

        for item in remove(cluster.kubectl, cluster.helm):
            print(f"e2e: removed the quick start's {item}")
    yield cluster
    if kwok_proc is not None:
        kwok_proc.terminate()
        kwok_proc.wait(timeout=15)
    if backend is Backend.LOCAL and _truthy("KAITO_E2E_TEARDOWN"):
        local_cluster_down()


@pytest.fixture(scope="session")
def kube_config_path(e2e_cluster: Cluster) -> Path:
    """Path of an admin kubeconfig for the cluster under test."""
    return e2e_cluster.kubeconfig


@pytest.fixture(scope="session")
def kube_api(kube_config_path: Path) -> Iterator[client.ApiClient]:
    """A kubernetes ``ApiClient`` logged in as cluster admin."""
    api = config.new_client_from_config(config_file=str(kube_config_path))
    yield api
    api.close()


@pytest.fixture(scope="session")
def core_v1(kube_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


@pytest.fixture(scope="session")
def kubectl(e2e_cluster: Cluster) -> Callable[..., Any]:
    """``kubectl(*args, input=None, check=True)`` -> CompletedProcess, with the admin kubeconfig.

    Raises ``CommandError`` (stderr in its message) on a non-zero exit unless ``check=False``.
    """
    return e2e_cluster.kubectl


@pytest.fixture(scope="session")
def helm(e2e_cluster: Cluster) -> Callable[..., Any]:
    """``helm(*args, check=True)`` -> CompletedProcess, with the cluster's kubeconfig."""
    return e2e_cluster.helm


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "x"


@pytest.fixture
def namespace(core_v1: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace ``e2e-<test>-<random>`` with its default ServiceAccount; deleted after."""
    name = f"e2e-{_slug(request.node.name, 40)}-{kube.random_suffix()}"
    core_v1.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"kaito.sh/e2e": "true"}))
    )
    kube.wait_default_service_account(core_v1, name)
    yield name
    try:
        core_v1.delete_namespace(name, propagation_policy="Background")
    except ApiException as err:
        if err.status != 404:
            raise


@pytest.fixture
def add_gpu_node(core_v1: client.CoreV1Api) -> Iterator[AddGpuNode]:
    """Factory ``add_gpu_node(sku, name=None, labels=None, taints=()) -> V1Node``.

    Creates a KWOK fake node of a presets-catalog SKU, waits until it is Ready and
    untainted by the node lifecycle controller, and deletes it after the test. ``taints``
    items are ``Taint`` objects or ``"key=value:Effect"`` strings.
    """
    created: list[str] = []

    def add(
        sku: str,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Taint | str] = (),
        timeout: float = 60,
    ) -> Any:
        node_name = name or f"gpu-{_slug(sku, 40)}-{kube.random_suffix()}"
        parsed = [parse_taint(t) if isinstance(t, str) else t for t in taints]
        body = fake_gpu_node(node_name, shape_for_sku(sku), labels=labels, taints=parsed)
        core_v1.create_node(body)  # type: ignore[arg-type]  # the client accepts plain dicts
        created.append(node_name)
        return kube.wait_node_schedulable(core_v1, node_name, timeout=timeout)

    yield add
    for node_name in created:
        try:
            core_v1.delete_node(node_name)
        except ApiException as err:
            if err.status != 404:
                raise
