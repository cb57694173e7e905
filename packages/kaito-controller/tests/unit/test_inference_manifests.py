"""Inference builders: workload shape by node count, Services, probes, adapters, config."""

from __future__ import annotations

import os
import shlex
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
    distributed_engine_args,
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


def _distributed(n: int = 4) -> InferenceParams:
    config = {
        "backend": "vllm",
        "model": "deepseek-ai/DeepSeek-R1-0528",
        "dtype": "bfloat16",
        "max_model_len": 76800,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "vllm_engine_args": {
            "pipeline_parallel_size": n,
            "nnodes": n,
            "distributed_executor_backend": "mp",
            "enable_lora": False,
            **distributed_engine_args(WS),
        },
    }
    return params(
        model="deepseek-ai/DeepSeek-R1-0528", node_count=n, gpus_per_node=2, server_config=config
    )


def test_several_nodes_run_a_leader_server_and_headless_vllm_workers() -> None:
    sts = build_inference_workload(WS, _distributed(), "h1")
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 4
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["command"][:2] == ["sh", "-c"] and c["args"] == []
    index = next(e for e in c["env"] if e["name"] == "POD_INDEX")
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    leader_cmd, worker_cmd = _branches(c["command"][2])
    assert leader_cmd[:2] == ["kaito-inference", "serve"]
    assert "--config" in leader_cmd  # the leader reads nnodes/node_rank 0/master_addr there
    assert worker_cmd[:4] == ["vllm", "serve", "deepseek-ai/DeepSeek-R1-0528", "--headless"]
    flags = _flags(worker_cmd)
    assert flags["--tensor-parallel-size"] == "2" and flags["--pipeline-parallel-size"] == "4"
    assert flags["--nnodes"] == "4" and flags["--master-port"] == "29501"
    assert flags["--master-addr"] == "ws-0.ws-headless.ns.svc.cluster.local"
    assert flags["--distributed-executor-backend"] == "mp"
    assert "--no-enable-lora" in flags
    assert worker_cmd[-2:] == ["--node-rank", "$POD_INDEX"]
    assert "--node-rank" not in worker_cmd[:-2]  # node_rank 0 is the leader's alone
    assert {"name": "dist", "containerPort": 29501} in c["ports"]
    # Probes: exec, the leader asking itself and a worker asking the leader.
    for probe, path in (("startupProbe", "/health"), ("readinessProbe", "/health")):
        script = c[probe]["exec"]["command"][2]
        assert "h=127.0.0.1; else h=ws-0.ws-headless.ns.svc.cluster.local" in script
        assert script.endswith(f'"http://$h:5000{path}"')
    assert c["livenessProbe"]["exec"]["command"][2].endswith('"http://$h:5000/health/live"')
    main, headless = build_services(WS, _distributed())
    assert main["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "ws-0"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {29500, 29501}


def _branches(script: str) -> tuple[list[str], list[str]]:
    """The leader's and the workers' commands of the distributed shell script."""
    head, _, rest = script.partition("; then exec ")
    assert head == 'if [ "${POD_INDEX:-0}" = 0 ]'
    leader, _, worker = rest.partition("; else exec ")
    return shlex.split(leader), shlex.split(worker.removesuffix("; fi"))


def _flags(args: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            out[arg] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_the_distributed_script_runs_the_right_branch(tmp_path: Path) -> None:
    sts = build_inference_workload(WS, _distributed(2), "h1")
    script = sts["spec"]["template"]["spec"]["containers"][0]["command"][2]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kaito-inference", "vllm"):
        exe = bin_dir / tool
        exe.write_text(f'#!/bin/sh\necho {tool} "$@"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    sh = shutil.which("sh")
    assert sh is not None
    leader = subprocess.run(
        [sh, "-c", script],
        env={**env, "POD_INDEX": "0"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    worker = subprocess.run(
        [sh, "-c", script],
        env={**env, "POD_INDEX": "1"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert leader.startswith("kaito-inference serve --config")
    assert worker.startswith("vllm serve deepseek-ai/DeepSeek-R1-0528 --headless")
    assert worker.rstrip().endswith("--node-rank 1")


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
