"""The three Phi-3 quick starts end to end in real pods, their failure paths and restarts.

Both charts run as pods (kaito_e2e.deploy) with the local settings only: images from the
cluster's registry, the ``local`` node provider, and the model override (the tiny model baked
into the CPU inference image, copied from the tiny-model image as the tuning Job's base
weights). Everything else is what the controller builds for the quick start's manifests:

- inference: the Deployment's pod on the node the provisioner made for the NodeClaim, ready by
  its own probes; the quick start's last step (curl in a temporary pod to the Service's cluster
  IP) and the OpenAI client through `kubectl port-forward` both answer;
- tuning: the Job's init containers copy the weights and fetch a parquet dataset from an
  in-cluster Service, the tuning container trains LoRA on CPU (the quick start's QLoRA needs
  bitsandbytes on a CUDA GPU) and pushes the adapter with the imagePushSecret; a second
  Workspace serves that exact image as an adapter (pulled by the oras init container) and
  answers through it; controller and provisioner pods are deleted mid-flight and nothing is
  duplicated;
- failures: a wrong push secret, an unreachable dataset URL, a bad adapter image and an
  OOM-killed inference container each become a reason on the Workspace with the pod's own
  message, and deleting the Workspace leaves no Job, NodeClaim, node or pushed tag behind.

Workspaces run one or two at a time and are deleted (their nodes with them) before the next
test: every node pulls its own copy of a multi-GB image.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kaito_e2e import deploy, workspaces
from kaito_e2e.cluster import Backend, Cluster
from kaito_e2e.images import ImageSpec
from kaito_e2e.kube import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
Kubectl = Callable[..., Any]
PROMPT = "What is Kubernetes?"
READY_TIMEOUT = 900  # a fresh node pulls the CPU inference image (~3 GB compressed) first
TINY_LORA_CONFIG = {
    "training_config": {
        "ModelConfig": {"torch_dtype": "float32", "local_files_only": True},
        "LoraConfig": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
        "TrainingArguments": {
            "output_dir": "/mnt/output",
            "save_strategy": "no",
            "per_device_train_batch_size": 2,
            "max_steps": 3,
            "logging_steps": 1,
        },
        "DatasetConfig": {"shuffle_dataset": False, "train_test_split": 1},
    }
}


@dataclass(frozen=True)
class Stack:
    """The operators as pods and what the tests need to reach them."""

    info: deploy.ClusterInfo
    specs: dict[str, ImageSpec]
    kubectl: Kubectl
    kubectl_argv: tuple[str, ...]

    def image(self, name: str) -> str:
        return self.info.image(self.specs[name])


@pytest.fixture(scope="module")
def stack(e2e_cluster: Cluster) -> Iterator[Stack]:
    if e2e_cluster.backend is not Backend.LOCAL:
        pytest.skip("needs the local cluster's registry and node agent")
    info = deploy.ClusterInfo.load()
    deploy.build_and_push()
    deploy.install(info, e2e_cluster.kubectl, e2e_cluster.helm)
    argv = (e2e_cluster.kubectl_path, f"--kubeconfig={e2e_cluster.kubeconfig}")
    yield Stack(info, deploy.images(), e2e_cluster.kubectl, argv)
    deploy.remove(e2e_cluster.kubectl, e2e_cluster.helm)


@pytest.fixture
def ns(stack: Stack, namespace: str) -> Iterator[str]:
    """The test's namespace; its Workspaces are deleted after the test and their NodeClaims
    (with their nodes and disks) waited out, so the next test starts with no GPU node."""
    yield namespace
    kubectl = stack.kubectl
    kubectl("delete", "workspaces", "--all", "-n", namespace, "--wait=false", check=False)
    wait_until(
        lambda: not claims_of(kubectl, namespace),
        timeout=300,
        what=f"the NodeClaims of {namespace}'s Workspaces released",
    )


# --- helpers ---------------------------------------------------------------------------------


def claims_of(kubectl: Kubectl, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    selector = f"kaito.sh/workspacenamespace={namespace}"
    if name:
        selector += f",kaito.sh/workspace={name}"
    out = kubectl("get", "nodeclaims", "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def pods_of(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "pods", "-n", namespace, "-l", f"kaito.sh/workspace={name}", "-o", "json")
    return list(json.loads(out.stdout)["items"])


def example(file: str, name: str | None = None) -> dict[str, Any]:
    """A quick start manifest as written, optionally under another name."""
    body = yaml.safe_load((QUICKSTART / file).read_text())
    if name:
        body["metadata"]["name"] = name
    return body


def apply(kubectl: Kubectl, namespace: str, *objects: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def report(line: str) -> None:
    print(f"    {line}", flush=True)


def wait(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    type_: str,
    timeout: float = READY_TIMEOUT,
    **kw: Any,
) -> dict[str, Any]:
    return workspaces.wait_for_condition(
        kubectl, namespace, name, type_, timeout=timeout, report=report, **kw
    )


def chat(base: str, model: str) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=12, seed=0
    )
    text = completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert text is not None
    return text


def served_models(base: str) -> list[str]:
    from openai import OpenAI

    return [m.id for m in OpenAI(base_url=f"{base}/v1", api_key="unused").models.list().data]


def registry_has(stack: Stack, repository: str, tag: str) -> bool:
    """Anonymous pull access, as a node's containerd or oras has it."""
    url = f"http://{stack.info.registry}/v2/{repository}/manifests/{tag}"
    accept = "application/vnd.oci.image.manifest.v1+json"
    return httpx.head(url, headers={"Accept": accept}, timeout=10).status_code == 200


def push_secret(stack: Stack, name: str, password: str | None = None) -> dict[str, Any]:
    user, real = stack.info.registry_credentials()
    return workspaces.registry_secret(name, stack.info.registry, user, password or real)


def dataset_server(stack: Stack, rows: int = 16) -> list[dict[str, Any]]:
    """A parquet file in the OpenAI messages layout of the quick start's dolly-15k, served over
    HTTP by a Deployment + Service ``datasets`` (the controller image's python3 on the system
    node, which has that image already)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    messages = [
        [
            {"role": "user", "content": f"What is item {i}?"},
            {"role": "assistant", "content": f"Item {i} is a small test fact."},
        ]
        for i in range(rows)
    ]
    sink = io.BytesIO()
    pq.write_table(pa.table({"messages": messages}), sink)
    labels = {"app": "datasets"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "datasets"},
            "binaryData": {"train.parquet": base64.b64encode(sink.getvalue()).decode()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "datasets"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": deploy.SYSTEM_POOL,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "containers": [
                            {
                                "name": "http",
                                "image": stack.image("controller"),
                                "command": ["python3", "-m", "http.server", "8000"],
                                "args": ["--directory", "/data"],
                                "ports": [{"containerPort": 8000}],
                                "readinessProbe": {"tcpSocket": {"port": 8000}},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "configMap": {"name": "datasets"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "datasets"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]},
        },
    ]


def tuning_workspace(
    name: str, namespace: str, output: str, *, url: str | None = None
) -> list[dict[str, Any]]:
    """The tuning quick start with LoRA (no bitsandbytes without CUDA), the in-cluster dataset
    and a 3-step training config (a ConfigMap named by ``tuning.config``)."""
    ws = example("phi-3-qlora-tuning.yaml", name)
    ws["tuning"]["method"] = "lora"
    ws["tuning"]["config"] = "tiny-lora"
    ws["tuning"]["input"]["urls"] = [
        url or f"http://datasets.{namespace}.svc.cluster.local/train.parquet"
    ]
    ws["tuning"]["output"]["image"] = output
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "tiny-lora"},
        "data": {"training_config.yaml": yaml.safe_dump(TINY_LORA_CONFIG)},
    }
    return [config, ws]


def delete_workspace(stack: Stack, namespace: str, name: str) -> None:
    """Delete and wait until its Job, NodeClaims and their nodes are gone."""
    kubectl = stack.kubectl
    kubectl("delete", "workspace", name, "-n", namespace, "--timeout=300s")
    wait_until(
        lambda: not claims_of(kubectl, namespace, name),
        timeout=300,
        what=f"{name}'s NodeClaims gone",
    )
    left = kubectl("get", "jobs,deployments", "-n", namespace, "-l", f"kaito.sh/workspace={name}",
                   "-o", "name").stdout.split()  # fmt: skip
    assert left == [], f"left behind by {name}: {left}"


def operator_pods(kubectl: Kubectl) -> dict[str, str]:
    names: dict[str, str] = {}
    for namespace in (deploy.CONTROLLER_NAMESPACE, deploy.PROVISIONER_NAMESPACE):
        out = kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()
        names.update({pod: namespace for pod in out})
    return names


def restart_operators(kubectl: Kubectl, *namespaces: str) -> None:
    """Delete the operators' pods now (no grace period), as a node loss or an eviction would."""
    for namespace in namespaces:
        kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force",
                "--wait=false")  # fmt: skip


# --- the quick starts ------------------------------------------------------------------------


def test_inference_quick_start_answers_from_a_pod_and_the_openai_client(
    stack: Stack, ns: str
) -> None:
    kubectl = stack.kubectl
    ws = example("phi-3-mini-inference.yaml")
    name = ws["metadata"]["name"]
    apply(kubectl, ns, ws)
    wait(kubectl, ns, name, "WorkspaceReady")

    (claim,) = claims_of(kubectl, ns, name)
    node = claim["status"]["nodeName"]
    (pod,) = [p for p in pods_of(kubectl, ns, name) if p["status"].get("phase") == "Running"]
    assert pod["spec"]["nodeName"] == node, "the workload runs on the node made for its claim"
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"], "readiness comes from the pod's own probe"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"

    ip = workspaces.cluster_ip(kubectl, ns, name)
    answer = workspaces.curl_from_a_pod(
        kubectl, ns, stack.image("curl"), f"http://{ip}/chat",
        {"prompt": PROMPT, "max_new_tokens": 12},
    )  # fmt: skip
    body = json.loads(answer)
    assert isinstance(body.get("Result"), str) and body["Result"], answer

    with workspaces.port_forward(stack.kubectl_argv, ns, name) as base:
        assert served_models(base) == ["phi-3-mini-4k-instruct"]
        assert chat(base, "phi-3-mini-4k-instruct")


def test_tuning_quick_start_pushes_an_adapter_a_second_workspace_serves(
    stack: Stack, ns: str
) -> None:
    """Tune → push → serve, with the controller's and provisioner's pods deleted while the
    node is being provisioned and again while the Job runs."""
    kubectl = stack.kubectl
    repository, tag = f"e2e/{ns}/phi-3-adapter", "0.0.1"
    output = f"{stack.info.registry}/{repository}:{tag}"
    name = "workspace-tuning-phi-3"
    apply(kubectl, ns, *dataset_server(stack), push_secret(stack, "registry-push-secret"))
    kubectl("rollout", "status", "deployment/datasets", "-n", ns, "--timeout=180s")
    apply(kubectl, ns, *tuning_workspace(name, ns, output))

    wait_until(lambda: claims_of(kubectl, ns, name), timeout=60, what="the NodeClaim")
    before = operator_pods(kubectl)
    restart_operators(kubectl, deploy.CONTROLLER_NAMESPACE, deploy.PROVISIONER_NAMESPACE)
    wait(kubectl, ns, name, "JobStarted")
    after = operator_pods(kubectl)
    assert not set(before) & set(after), "the operators' pods were replaced"
    restart_operators(kubectl, deploy.CONTROLLER_NAMESPACE)
    done = wait(kubectl, ns, name, "WorkspaceSucceeded")
    assert done["status"]["state"] == "Succeeded"

    assert len(claims_of(kubectl, ns, name)) == 1, "no duplicate NodeClaim after the restarts"
    jobs = kubectl("get", "jobs", "-n", ns, "-o", "name").stdout.split()
    assert jobs == [f"job.batch/{name}"], jobs
    nodes = kubectl("get", "nodes", "-l", f"kaito.sh/workspace={name}", "-o", "name").stdout.split()
    assert len(nodes) == 1, nodes
    assert registry_has(stack, repository, tag), f"{output} was not pushed"
    delete_workspace(stack, ns, name)

    adapter_ws = example("phi-3-mini-adapter.yaml")
    adapter_ws["inference"]["adapters"][0]["source"]["image"] = output
    adapter_name = adapter_ws["metadata"]["name"]
    apply(kubectl, ns, adapter_ws)
    wait(kubectl, ns, adapter_name, "WorkspaceReady")
    (pod,) = [
        p for p in pods_of(kubectl, ns, adapter_name) if p["status"].get("phase") == "Running"
    ]
    pulled = {c["name"]: c for c in pod["status"]["initContainerStatuses"]}
    assert any("oras" in c["image"] for c in pulled.values()), pulled
    with workspaces.port_forward(stack.kubectl_argv, ns, adapter_name) as base:
        assert sorted(served_models(base)) == ["phi-3-adapter", "phi-3-mini-128k-instruct"]
        assert chat(base, "phi-3-adapter")

    # What the server keeps in its weights directory (HF_HOME: what it downloads) is the node's
    # and outlives the pod; it is the server's non-root user's to write.
    kept = f"/workspace/weights/kept-by-{ns}"
    pod_name = pod["metadata"]["name"]
    kubectl("exec", pod_name, "-n", ns, "-c", adapter_name, "--", "sh", "-c", f"echo {ns} > {kept}")
    assert pulled["weights-cache-owner"]["state"]["terminated"]["exitCode"] == 0, pulled

    # Dropping the adapter rolls the pod (Recreate: the GPU is the old pod's until it goes);
    # the node keeps its images and its weights, so only the pod start and the model load are
    # paid again.
    start = time.monotonic()
    patch = [{"op": "remove", "path": "/inference/adapters"}]
    kubectl("patch", "workspace", adapter_name, "-n", ns, "--type=json", "-p", json.dumps(patch))

    def replaced() -> bool:
        running = [
            p for p in pods_of(kubectl, ns, adapter_name) if p["status"].get("phase") == "Running"
        ]
        return bool(running) and all(
            p["metadata"]["name"] != pod["metadata"]["name"]
            and {c["type"]: c["status"] for c in p["status"].get("conditions", [])}.get("Ready")
            == "True"
            for p in running
        )

    wait_until(replaced, timeout=300, what="the adapter-less pod Ready")
    report(f"adapter change: new pod ready {time.monotonic() - start:.1f}s after the patch")
    wait(kubectl, ns, adapter_name, "WorkspaceReady", timeout=60)
    with workspaces.port_forward(stack.kubectl_argv, ns, adapter_name) as base:
        assert served_models(base) == ["phi-3-mini-128k-instruct"]
    (new_pod,) = [
        p for p in pods_of(kubectl, ns, adapter_name) if p["status"].get("phase") == "Running"
    ]
    assert new_pod["spec"]["nodeName"] == pod["spec"]["nodeName"]
    seen = kubectl(
        "exec", new_pod["metadata"]["name"], "-n", ns, "-c", adapter_name, "--",
        "sh", "-c", f"id -u; stat -c '%u %a' /workspace/weights; cat {kept}",
    ).stdout.split()  # fmt: skip
    assert seen == ["65532", "65532", "750", ns], seen


# --- failures ---------------------------------------------------------------------------------


def test_tuning_failures_name_the_cause_and_push_nothing(stack: Stack, ns: str) -> None:
    """A push secret with a wrong password and a dataset URL nobody answers, side by side."""
    kubectl = stack.kubectl
    apply(kubectl, ns, *dataset_server(stack), push_secret(stack, "registry-push-secret", "wrong"))
    wrong_secret = f"e2e/{ns}/wrong-secret"
    unreachable = f"e2e/{ns}/unreachable"
    apply(
        kubectl,
        ns,
        *tuning_workspace("wrong-secret", ns, f"{stack.info.registry}/{wrong_secret}:1"),
    )
    apply(kubectl, ns, *tuning_workspace(
        "unreachable", ns, f"{stack.info.registry}/{unreachable}:1",
        url=f"http://nobody-serves-this.{ns}.svc.cluster.local/train.parquet",
    ))  # fmt: skip

    failed = wait(kubectl, ns, "wrong-secret", "WorkspaceSucceeded", status="False",
                  reason="WorkspaceTuningJobRetrying")  # fmt: skip
    message = workspaces.conditions(failed)["WorkspaceSucceeded"]["message"]
    assert "container tuning exited 6: RegistryAuthFailed" in message, message
    failed = wait(kubectl, ns, "unreachable", "WorkspaceSucceeded", status="False",
                  reason="WorkspaceTuningJobRetrying")  # fmt: skip
    message = workspaces.conditions(failed)["WorkspaceSucceeded"]["message"]
    assert "container data-fetcher exited" in message and "nobody-serves-this" in message, message

    for name, repository in (("wrong-secret", wrong_secret), ("unreachable", unreachable)):
        assert not registry_has(stack, repository, "1"), f"{name} pushed a tag"
        delete_workspace(stack, ns, name)


def test_bad_adapter_image_and_oom_name_the_cause(stack: Stack, ns: str) -> None:
    """An adapter image that does not exist, and an inference container over its memory limit
    (the namespace's LimitRange gives containers without a memory limit 64 MiB)."""
    kubectl = stack.kubectl
    adapter_ws = example("phi-3-mini-adapter.yaml")
    adapter_ws["inference"]["adapters"][0]["source"]["image"] = (
        f"{stack.info.registry}/e2e/{ns}/no-such-adapter:0.0.1"
    )
    apply(kubectl, ns, adapter_ws)
    bad = wait(kubectl, ns, adapter_ws["metadata"]["name"], "InferenceReady", status="False",
               reason="ContainerCrashLoopBackOff")  # fmt: skip
    message = workspaces.conditions(bad)["InferenceReady"]["message"]
    assert "phi-3-adapter" in message and "no-such-adapter" in message, message
    delete_workspace(stack, ns, adapter_ws["metadata"]["name"])

    limits = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "small"},
        "spec": {"limits": [{"type": "Container", "default": {"memory": "64Mi"},
                             "defaultRequest": {"memory": "64Mi"}}]},
    }  # fmt: skip
    apply(kubectl, ns, limits)
    ws = example("phi-3-mini-inference.yaml", "too-small")
    apply(kubectl, ns, ws)
    oom = wait(
        kubectl, ns, "too-small", "InferenceReady", status="False", reason="ContainerOOMKilled"
    )
    message = workspaces.conditions(oom)["InferenceReady"]["message"]
    assert "OOM-killed" in message and "too-small" in message, message
    delete_workspace(stack, ns, "too-small")
