"""The Python half of `make quickstart`: the Phi-3 quick start, as written, on real pods.

hack/quickstart.sh has started the local cluster and installed both charts as pods
(`python -m kaito_e2e.deploy up`). This applies `examples/quickstart/phi-3-mini-inference.yaml`,
shows the Workspace's conditions as they change until it is ready (the provisioner brings up a
real node for its NodeClaim, the controller's Deployment runs the CPU inference image there, and
readiness comes from the pod's probes), then runs the quick start's last step as written:

    export CLUSTERIP=$(kubectl get svc workspace-phi-3-mini -o jsonpath="{.spec.clusterIPs[0]}")
    kubectl run -it --rm --restart=Never curl --image=<local curl image> -- \\
      curl -X POST http://$CLUSTERIP/chat -H "accept: application/json" \\
      -H "Content-Type: application/json" -d '{"prompt":"YOUR QUESTION HERE"}'

and an OpenAI chat completion with the official client through
`kubectl port-forward svc/workspace-phi-3-mini`. The only local substitutions are the cluster's
registry for the images and the model override (the image's baked-in tiny model instead of the
Phi-3 weights, there being no GPU); both are chart values (kaito_e2e.deploy.operator_values).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kaito_e2e.deploy import ClusterInfo, images

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples/quickstart/phi-3-mini-inference.yaml"
NAMESPACE = "default"
WAIT_SECONDS = int(os.environ.get("KAITO_QUICKSTART_WAIT", "900"))
CONDITIONS = ("ResourceReady", "InferenceReady", "WorkspaceSucceeded", "WorkspaceReady")
PROMPT = "What is Kubernetes?"


def kubectl(*args: str, check: bool = True) -> str:
    out = subprocess.run(["kubectl", *args], text=True, capture_output=True, check=False)
    if check and out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{out.stderr.strip()}")
    return out.stdout


def conditions_line(ws: dict[str, Any]) -> str:
    conds = {c["type"]: c for c in ws.get("status", {}).get("conditions", [])}
    return "  ".join(
        f"{t}={conds[t]['status']}"
        + ("" if conds[t]["status"] == "True" else f"({conds[t].get('reason', '')})")
        for t in CONDITIONS
        if t in conds
    )


def wait_ready(name: str) -> None:
    """Poll the Workspace and print each change of its conditions until it is ready."""
    start, last = time.monotonic(), ""
    while time.monotonic() - start < WAIT_SECONDS:
        ws = json.loads(kubectl("get", "workspace", name, "-n", NAMESPACE, "-o", "json"))
        line = conditions_line(ws) or "no conditions yet"
        if line != last:
            print(f"  [{time.monotonic() - start:5.1f}s] {line}", flush=True)
            last = line
        conds = {c["type"]: c for c in ws.get("status", {}).get("conditions", [])}
        if conds.get("WorkspaceReady", {}).get("status") == "True":
            return
        time.sleep(2)
    print(kubectl("describe", "workspace", name, "-n", NAMESPACE, check=False))
    print(kubectl("get", "pods,nodeclaims,nodes", "-o", "wide", check=False))
    sys.exit(f"workspace {name} was not ready after {WAIT_SECONDS}s (see the status above)")


def chat_from_a_pod(name: str, curl_image: str) -> str:
    """The quick start's last step, as written: curl in a temporary pod to the Service's IP."""
    cluster_ip = kubectl(
        "get", "svc", name, "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIPs[0]}"
    ).strip()  # fmt: skip
    body = json.dumps({"prompt": PROMPT, "max_new_tokens": 24})
    command = [
        "run", "-i", "--rm", "--restart=Never", "curl", f"--image={curl_image}", "-n", NAMESPACE,
        "--", "curl", "-sS", "-X", "POST", f"http://{cluster_ip}/chat",
        "-H", "accept: application/json", "-H", "Content-Type: application/json", "-d", body,
    ]  # fmt: skip
    print(f"  export CLUSTERIP={cluster_ip}")
    print(f"  kubectl run -i --rm --restart=Never curl --image={curl_image} -- \\")
    print(f"    curl -X POST http://$CLUSTERIP/chat ... -d '{body}'")
    out = kubectl(*command)
    # kubectl run --rm prints its own "pod ... deleted" line after the container's output.
    return re.sub(r'pod "curl" deleted.*$', "", out, flags=re.S).strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def port_forward(name: str) -> Iterator[str]:
    """``kubectl port-forward svc/NAME PORT:80``; yields the local base URL."""
    port = free_port()
    proc = subprocess.Popen(
        ["kubectl", "port-forward", "-n", NAMESPACE, f"svc/{name}", f"{port}:80"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if "Forwarding from" not in first:
            sys.exit(f"kubectl port-forward failed: {first}{proc.stdout.read()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def openai_answer(base: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="unused")
    model = client.models.list().data[0].id
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=24,
        seed=0,
    )
    print(f"  openai chat.completions.create(model={model!r}) ->")
    print(f"    {completion.choices[0].message.content!r}  (usage: {completion.usage})")


def main() -> None:
    name = yaml.safe_load(MANIFEST.read_text())["metadata"]["name"]
    info = ClusterInfo.load()
    curl_image = info.image(images()["curl"])
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(MANIFEST)).strip())
    wait_ready(name)
    print(kubectl("get", "workspace", name, "-n", NAMESPACE))
    print(kubectl("get", "pods", "-A", "-o", "wide"))
    print(kubectl("get", "svc", name, "-n", NAMESPACE))
    print("\nThe quick start's last step, from a pod:")
    answer = chat_from_a_pod(name, curl_image)
    print(f"    -> {answer}")
    print("\nAn OpenAI chat completion through `kubectl port-forward svc/" + name + "`:")
    with port_forward(name) as base:
        openai_answer(base)
    print("\n  (a tiny random-weight model answers: expect gibberish; the plumbing is the point)")


if __name__ == "__main__":
    main()
