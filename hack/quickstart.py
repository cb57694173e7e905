"""The Python half of `make quickstart`: apply the Phi-3 Workspace, wait, then talk to it.

hack/quickstart.sh has already started the local cluster, the controller and the provisioner.
This script applies `examples/quickstart/phi-3-mini-inference.yaml`, shows the Workspace's
conditions as they change until it is ready, then starts the inference server on the host with
the exact command, environment and config of the container the controller put in the Deployment
(KWOK runs no containers), with two substitutions that it prints: a tiny local CPU model instead of
the Phi-3 weights and the transformers backend instead of vLLM (no GPU here). Finally it sends the
quick start's `POST /chat` and an OpenAI chat completion and prints both answers.

The inference server is left running (its pid is in the state dir) so the user can keep using it;
`down` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from kaito_e2e.dataplane import host_invocation, write_files
from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples/quickstart/phi-3-mini-inference.yaml"
NAMESPACE = "default"
STATE = Path(os.environ.get("KAITO_CLUSTER_DIR", Path.home() / ".local/share/kaito-local-cluster"))
QS_DIR = STATE / "quickstart"
PID_FILE = QS_DIR / "inference.pid"
LOG_FILE = QS_DIR / "inference.log"
WAIT_SECONDS = int(os.environ.get("KAITO_QUICKSTART_WAIT", "300"))
CONDITIONS = ("ResourceReady", "InferenceReady", "WorkspaceSucceeded", "WorkspaceReady")


def kubectl(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        ["kubectl", *args], input=stdin, text=True, capture_output=True, check=False
    )
    if out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{out.stderr.strip()}")
    return out.stdout


def wait_ready(api: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    """Poll the Workspace, print each change of its conditions, return it once ready."""
    start, last = time.monotonic(), ""
    while time.monotonic() - start < WAIT_SECONDS:
        ws = api.get_namespaced_custom_object("kaito.sh", "v1beta1", NAMESPACE, "workspaces", name)
        conds = {c["type"]: c for c in ws.get("status", {}).get("conditions", [])}
        line = "  ".join(
            f"{t}={conds[t]['status']}"
            + ("" if conds[t]["status"] == "True" else f"({conds[t].get('reason', '')})")
            for t in CONDITIONS
            if t in conds
        )
        if line != last:
            print(f"  [{time.monotonic() - start:5.1f}s] {line or 'no conditions yet'}", flush=True)
            last = line
        ready = conds.get("WorkspaceReady") or conds.get("WorkspaceSucceeded")
        if ready and ready["status"] == "True":
            return ws
        time.sleep(1)
    print(kubectl("get", "workspace", name, "-n", NAMESPACE, "-o", "yaml"))
    sys.exit(f"workspace {name} was not ready after {WAIT_SECONDS}s (see the status above)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_model() -> tuple[Path, Path]:
    model, adapters = QS_DIR / "tiny-model", QS_DIR / "adapters"
    if not (model / "config.json").is_file():
        print("  building a tiny Phi-3-style model offline (random weights, local tokenizer)")
        subprocess.run(["kaito-inference", "make-tiny-model", str(model)], check=True)
    adapters.mkdir(parents=True, exist_ok=True)
    return model, adapters


def start_server(apps: client.AppsV1Api, core: client.CoreV1Api, name: str) -> str:
    """Start the Deployment's inference container on the host; return its base URL."""
    stop_server()
    workload = apps.api_client.sanitize_for_serialization(
        apps.read_namespaced_deployment(name, NAMESPACE)
    )
    workload["kind"] = "Deployment"
    configmaps = {
        cm.metadata.name: core.api_client.sanitize_for_serialization(cm)
        for cm in core.list_namespaced_config_map(NAMESPACE).items
    }
    model, _ = tiny_model()
    port = free_port()
    inv = host_invocation(
        workload,
        configmaps,
        root=QS_DIR / "root",
        container=None,
        flag_overrides={
            "--model": str(model),
            "--backend": "transformers",
            "--port": str(port),
            "--host": "127.0.0.1",
        },
    )
    write_files(inv)
    print("  the controller's container, run on the host:")
    print("   ", " ".join(inv.argv))
    print("  substituted (no GPU, no Phi-3 weights here):", json.dumps(inv.overrides))
    env = {**os.environ, **inv.env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with LOG_FILE.open("w") as log:
        proc = subprocess.Popen(
            inv.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    PID_FILE.write_text(str(proc.pid))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"inference server exited with {proc.returncode}; log: {LOG_FILE}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit(f"inference server not ready after 180s; log: {LOG_FILE}")


def ask(base: str, served_model: str) -> None:
    from openai import OpenAI

    prompt = "What is Kubernetes?"
    chat = httpx.post(f"{base}/chat", json={"prompt": prompt, "max_new_tokens": 24}, timeout=120)
    chat.raise_for_status()
    print(f"\n  POST /chat {{'prompt': {prompt!r}}} ->\n    {chat.json()}")
    openai = OpenAI(base_url=f"{base}/v1", api_key="unused")
    completion = openai.chat.completions.create(
        model=served_model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=24,
        seed=0,
    )
    print(f"\n  openai chat.completions.create(model={served_model!r}) ->")
    print(f"    {completion.choices[0].message.content!r}  (usage: {completion.usage})")
    print(
        "\n  (a tiny random-weight model answers: expect gibberish, the plumbing is what is shown)"
    )


def stop_server() -> None:
    if PID_FILE.is_file():
        pid = int(PID_FILE.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        PID_FILE.unlink()


def up() -> None:
    QS_DIR.mkdir(parents=True, exist_ok=True)
    name = yaml.safe_load(MANIFEST.read_text())["metadata"]["name"]
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(MANIFEST)).strip())
    config.load_kube_config()
    api, apps, core = client.CustomObjectsApi(), client.AppsV1Api(), client.CoreV1Api()
    wait_ready(api, name)
    print(kubectl("get", "workspace", name, "-n", NAMESPACE))
    base = start_server(apps, core, name)
    models = httpx.get(f"{base}/v1/models", timeout=10).json()["data"]
    ask(base, models[0]["id"])
    print(f"\n  inference server left running at {base} (log: {LOG_FILE})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args()
    if args.action == "up":
        up()
    else:
        stop_server()


if __name__ == "__main__":
    main()
