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

import os
import subprocess
import sys
from pathlib import Path

import yaml
from kaito_e2e import workspaces
from kaito_e2e.deploy import ClusterInfo, images

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples/quickstart/phi-3-mini-inference.yaml"
NAMESPACE = "default"
WAIT_SECONDS = int(os.environ.get("KAITO_QUICKSTART_WAIT", "900"))
PROMPT = "What is Kubernetes?"


def kubectl(
    *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        ["kubectl", *args], input=input, text=True, capture_output=True, check=False
    )
    if check and out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{out.stderr.strip()}")
    return out


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
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(MANIFEST)).stdout.strip())
    try:
        workspaces.wait_for_condition(
            kubectl, NAMESPACE, name, "WorkspaceReady", timeout=WAIT_SECONDS,
            report=lambda line: print(f"  {line}", flush=True),
        )  # fmt: skip
    except workspaces.WorkspaceTimeout as err:
        print(kubectl("describe", "workspace", name, "-n", NAMESPACE, check=False).stdout)
        sys.exit(str(err))
    print(kubectl("get", "workspace", name, "-n", NAMESPACE).stdout)
    print(kubectl("get", "pods", "-A", "-o", "wide").stdout)
    print(kubectl("get", "svc", name, "-n", NAMESPACE).stdout)
    print("\nThe quick start's last step, from a pod:")
    cluster_ip = workspaces.cluster_ip(kubectl, NAMESPACE, name)
    body = {"prompt": PROMPT, "max_new_tokens": 24}
    print(f"  export CLUSTERIP={cluster_ip}")
    print(f"  kubectl run -i --rm --restart=Never curl --image={curl_image} -- \\")
    print(f"    curl -X POST http://$CLUSTERIP/chat ... -d '{body}'")
    answer = workspaces.curl_from_a_pod(
        kubectl, NAMESPACE, curl_image, f"http://{cluster_ip}/chat", body
    )
    print(f"    -> {answer}")
    print("\nAn OpenAI chat completion through `kubectl port-forward svc/" + name + "`:")
    with workspaces.port_forward(["kubectl"], NAMESPACE, name) as base:
        openai_answer(base)
    print("\n  (a tiny random-weight model answers: expect gibberish; the plumbing is the point)")


if __name__ == "__main__":
    main()
