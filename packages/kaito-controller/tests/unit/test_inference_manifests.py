"""Inference builders: workload shape by node count, Services, probes, adapters, config."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kaito_controller.manifests.common import WorkspaceRef
from kaito_controller.manifests.inference import (
    AdapterParams,
    InferenceParams,
    build_inference_workload,
    build_services,
    config_hash,
    render_server_config,
)
from kaito_controller.reconcile.inference import ConfigProblem, server_config, translate_user_config
from kaito_controller.reconcile.sizing import Sizing

WS = WorkspaceRef(name="ws", namespace="ns", uid="u1")


def params(**kw: Any) -> InferenceParams:
    base: dict[str, Any] = dict(
        model="microsoft/Phi-3-mini-4k-instruct",
        served_model_name="phi-3-mini-4k-instruct",
        backend="vllm",
        image="img:1",
        node_count=1,
        gpus_per_node=2,
        server_config={"backend": "vllm"},
        node_affinity=({"key": "apps", "operator": "In", "values": ["x"]},),
        startup_timeout_seconds=3600,
    )
    return InferenceParams(**(base | kw))


def test_one_node_is_a_deployment_with_gpus_probes_and_tolerations() -> None:
    dep = build_inference_workload(WS, params(), "h1")
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] == 1
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "u1"
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": 5000}
    assert c["startupProbe"]["failureThreshold"] == 360  # 3600 s / 10 s period
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "sku"}
    assert c["args"][c["args"].index("--config") + 1] == "/etc/kaito/inference_config.yaml"
    assert (
        dep["spec"]["template"]["metadata"]["annotations"]["kaito.sh/inference-config-hash"] == "h1"
    )


def test_several_nodes_are_a_statefulset_with_a_headless_service() -> None:
    sts = build_inference_workload(WS, params(node_count=3), "h1")
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "ws-headless"
    main, headless = build_services(WS, params(node_count=3))
    assert main["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "ws-0"
    assert headless["spec"]["clusterIP"] == "None"
    (only,) = build_services(WS, params())
    assert [(p["port"], p["targetPort"]) for p in only["spec"]["ports"]] == [
        (80, 5000),
        (29500, 29500),
    ]


def test_adapters_become_init_containers_and_mounts() -> None:
    adapters = (
        AdapterParams(name="a1", image="reg/a1:1", strength="0.5", image_pull_secrets=("pull",)),
        AdapterParams(name="a2", volume_source={"persistentVolumeClaim": {"claimName": "pvc"}}),
    )
    dep = build_inference_workload(WS, params(adapters=adapters, plain_http_registry=True), "h")
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["oras"]
    assert init["args"][:4] == ["pull", "reg/a1:1", "--output", "/mnt/adapter/a1"]
    assert "--plain-http" in init["args"] and "--registry-config" in init["args"]
    # A failed pull's output (and a crashed server's last lines) reach the Workspace's reason.
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/mnt/adapter", "/mnt/adapter/a2"} <= mounts
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["registry-a1"]["secret"]["secretName"] == "pull"
    assert vols["adapter-a2"]["persistentVolumeClaim"] == {"claimName": "pvc"}
    sizing = Sizing(
        model="m",
        served_model_name="s",
        runtime="vllm",
        node_count=1,
        gpus_per_node=1,
        dtype="float16",
        tensor_parallel_size=1,
        max_model_len=4096,
    )
    cfg = server_config(sizing, "transformers", "s", adapters, {})
    assert cfg["adapter_strengths"] == {"a1": 0.5}
    assert "tensor_parallel_size" not in cfg  # vLLM only


def test_config_change_changes_the_template_hash() -> None:
    a = config_hash(render_server_config({"max_model_len": 4096}))
    b = config_hash(render_server_config({"max_model_len": 2048}))
    assert a != b
    assert a == config_hash(render_server_config({"max_model_len": 4096}))


def test_user_config_accepts_kaito_layout_and_server_keys() -> None:
    got = translate_user_config(
        {"vllm": {"max-model-len": 2048, "enable-prefix-caching": True}, "dtype": "float16"}
    )
    assert got == {
        "max_model_len": 2048,
        "dtype": "float16",
        "vllm_engine_args": {"enable_prefix_caching": True},
    }


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [({"bogus": 1}, "unknown key 'bogus'"), ({"port": 1}, "set by the controller")],
)
def test_user_config_errors_name_the_key(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigProblem, match=fragment):
        translate_user_config(raw)


# --- weights: the node's cache or a per-pod emptyDir --------------------------------------


def pod_spec(**kw: Any) -> dict[str, Any]:
    return build_inference_workload(WS, params(**kw), "h1")["spec"]["template"]["spec"]


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [v for v in pod["volumes"] if v["name"] == name]
    return found


def test_without_a_node_cache_weights_are_a_per_pod_empty_dir() -> None:
    pod = pod_spec()
    assert volume(pod, "weights") == {"name": "weights", "emptyDir": {}}
    assert "initContainers" not in pod


def test_with_a_node_cache_weights_are_a_host_path_handed_to_the_server_user_first() -> None:
    pod = pod_spec(
        weights_cache_path="/var/lib/kaito/weights",
        adapters=(AdapterParams(name="a1", image="reg/a1:1"),),
    )
    assert volume(pod, "weights")["hostPath"] == {
        "path": "/var/lib/kaito/weights",
        "type": "DirectoryOrCreate",
    }
    owner, adapter = pod["initContainers"]
    assert owner["name"] == "weights-cache-owner" and adapter["name"] == "adapter-a1"
    assert owner["image"] == "img:1"  # the server's own image: nothing more to pull
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert owner["securityContext"]["allowPrivilegeEscalation"] is False
    assert owner["volumeMounts"] == [{"name": "weights", "mountPath": "/workspace/weights"}]
    server = pod["containers"][0]
    assert "securityContext" not in server  # the image's non-root user
    assert {"name": "HF_HOME", "value": "/workspace/weights"} in server["env"]
    assert {"name": "weights", "mountPath": "/workspace/weights"} in server["volumeMounts"]


def run_owner_script(pod: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    """The init container's command as root with CAP_CHOWN alone, as its securityContext says."""
    [owner] = pod["initContainers"]
    command = [*owner["command"][:-1], str(directory)]
    return subprocess.run(
        ["setpriv", "--bounding-set=-all,+chown", *command],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_the_owner_script_chowns_a_new_directory_once_with_only_cap_chown(tmp_path: Path) -> None:
    pod = pod_spec(weights_cache_path="/var/lib/kaito/weights")
    cache = tmp_path / "weights"
    cache.mkdir(mode=0o755)  # what the kubelet's DirectoryOrCreate leaves

    first = run_owner_script(pod, cache)
    assert first.returncode == 0, first.stderr
    st = cache.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65532, 65532, 0o750)

    # The next pod on the node: already the server's, so no chmod (which CAP_CHOWN cannot do).
    (cache / "hub").mkdir()
    second = run_owner_script(pod, cache)
    assert second.returncode == 0, second.stderr
    assert (cache / "hub").is_dir() and cache.stat().st_uid == 65532
