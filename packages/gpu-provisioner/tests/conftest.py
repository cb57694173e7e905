import sys
from pathlib import Path

import pytest

# The factory module sits next to this conftest; importlib import mode needs the path.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _no_host_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node agent's runtime runs as root and changes the host (network namespaces, cgroups,
    mounts, iptables through kube-proxy); tests may run as root next to a live local cluster.
    Whatever a test does, none of those calls can happen."""
    from kaito_gpu_provisioner.local.host import __main__ as cli
    from kaito_gpu_provisioner.local.host import runtime

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to change the host: {args}")

    for name in ("sh", "ensure_cgroups", "kill_cgroup_processes", "remove_cgroups", "unmount_all"):
        monkeypatch.setattr(runtime, name, refuse)
    monkeypatch.setattr(cli, "sh", refuse)
    monkeypatch.setattr(runtime.NodeRuntime, "start", refuse)
    monkeypatch.setattr(runtime.NodeRuntime, "stop", refuse)
