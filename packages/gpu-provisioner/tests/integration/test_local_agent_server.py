"""The node agent's HTTP API over a real aiohttp server on loopback (the agent's runtime is a
recording fake): bearer-token auth on everything but /healthz, status codes of the machine
resource, and errors that are always a JSON ``{"error": ...}``, never a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kaito_gpu_provisioner.local.host.agent import Agent
from kaito_gpu_provisioner.local.host.server import make_app
from kaito_gpu_provisioner.local.machines import MachinePhase, MachineSpec
from localfakes import AGENT_TOKEN, FakeRuntime, agent_config, serving, until

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {AGENT_TOKEN}"}
SPEC = {
    "name": "ws1",
    "instance_type": "Standard_NC6s_v3",
    "labels": {"kaito.sh/workspace": "phi-3"},
    "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
    "gpus": 1,
}


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent(agent_config(tmp_path), FakeRuntime(), node_api=lambda plan: None)  # type: ignore[arg-type]


@pytest.fixture
async def url(agent: Agent) -> AsyncIterator[str]:
    async with serving(make_app(agent, AGENT_TOKEN)) as base:
        yield base
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=10)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    async with http.request(
        method, url, data=data, headers=AUTH if headers is None else headers
    ) as r:
        text = await r.text()
        assert "Traceback" not in text
        if r.content_type == "application/json":
            return r.status, json.loads(text)
        return r.status, text


def error_of(payload: Any) -> str:
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    return str(payload["error"])


# --- auth ---------------------------------------------------------------------------


async def test_healthz_needs_no_token(http: aiohttp.ClientSession, url: str) -> None:
    assert await call(http, "GET", f"{url}/healthz", headers={}) == (200, "ok")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": AGENT_TOKEN},  # no scheme
        {"Authorization": f"Basic {AGENT_TOKEN}"},
        {"Authorization": f"Bearer {AGENT_TOKEN}x"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/machines"),
        ("GET", "/machines/ws1"),
        ("PUT", "/machines/ws1"),
        ("DELETE", "/machines/ws1"),
        ("GET", "/nope"),
    ],
)
async def test_everything_else_needs_the_token(
    http: aiohttp.ClientSession,
    url: str,
    agent: Agent,
    headers: dict[str, str],
    method: str,
    path: str,
) -> None:
    status, payload = await call(http, method, url + path, body=SPEC, headers=headers)
    assert status == 401
    assert "bearer token" in error_of(payload)
    assert agent.list() == []  # nothing happened


async def test_a_header_that_is_not_utf8_is_a_json_401(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /machines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert "bearer token" in error_of(json.loads(body))


# --- the machine resource -----------------------------------------------------------


async def test_put_creates_then_answers_the_same_machine(
    http: aiohttp.ClientSession, url: str, agent: Agent
) -> None:
    status, created = await call(http, "PUT", f"{url}/machines/ws1", body=SPEC)
    assert status == 201
    assert MachineSpec.model_validate(created["spec"]) == MachineSpec.model_validate(SPEC)
    assert created["phase"] == "Starting"
    assert (created["index"], created["node_ip"]) == (0, "198.18.127.10")
    await until(lambda: agent.get("ws1").phase is MachinePhase.RUNNING)  # type: ignore[union-attr]
    status, again = await call(http, "PUT", f"{url}/machines/ws1", body=SPEC)
    assert status == 200 and again["phase"] == "Running" and again["index"] == 0
    status, got = await call(http, "GET", f"{url}/machines/ws1")
    assert status == 200 and got == again
    status, listed = await call(http, "GET", f"{url}/machines")
    assert status == 200 and listed == {"items": [got]}


async def test_put_of_another_spec_is_409(http: aiohttp.ClientSession, url: str) -> None:
    await call(http, "PUT", f"{url}/machines/ws1", body=SPEC)
    status, payload = await call(http, "PUT", f"{url}/machines/ws1", body={**SPEC, "gpus": 2})
    assert status == 409
    assert "exists with another spec" in error_of(payload)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SPEC, "gpus": 99}, "gpus"),
        ({k: v for k, v in SPEC.items() if k != "instance_type"}, "instance_type"),
        ({**SPEC, "labels": {"bad key!": "x"}}, "labels"),
        ({**SPEC, "taints": [{"key": "k", "effect": "Maybe"}]}, "taints.0.effect"),
        ({**SPEC, "unknown": True}, "unknown"),
        ("{not json", "json"),
        ("", "json"),
        ([1, 2], "body: Input should be an object"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(
    http: aiohttp.ClientSession, url: str, agent: Agent, body: Any, field: str
) -> None:
    status, payload = await call(http, "PUT", f"{url}/machines/ws1", body=body)
    assert status == 422
    message = error_of(payload)
    assert message.startswith("invalid machine spec: ")
    assert field.lower() in message.lower()
    assert agent.list() == []


async def test_body_name_must_match_the_path(
    http: aiohttp.ClientSession, url: str, agent: Agent
) -> None:
    status, payload = await call(http, "PUT", f"{url}/machines/other", body=SPEC)
    assert status == 422
    assert error_of(payload) == "name: 'ws1' in the body, 'other' in the path"
    assert agent.list() == []


async def test_unknown_machines_are_404(http: aiohttp.ClientSession, url: str) -> None:
    for method in ("GET", "DELETE"):
        status, payload = await call(http, method, f"{url}/machines/nope")
        assert status == 404
        assert error_of(payload) == "machine 'nope' not found"


async def test_delete_is_202_then_404_once_gone(
    http: aiohttp.ClientSession, url: str, agent: Agent
) -> None:
    await call(http, "PUT", f"{url}/machines/ws1", body=SPEC)
    status, payload = await call(http, "DELETE", f"{url}/machines/ws1")
    assert status == 202 and payload["phase"] == "Stopping"
    await until(lambda: agent.get("ws1") is None)
    assert (await call(http, "GET", f"{url}/machines/ws1"))[0] == 404


async def test_unknown_routes_and_methods_are_json_errors(
    http: aiohttp.ClientSession, url: str
) -> None:
    status, payload = await call(http, "GET", f"{url}/nope")
    assert status == 404 and error_of(payload) == "Not Found"
    status, payload = await call(http, "POST", f"{url}/machines", body=SPEC)
    assert status == 405 and error_of(payload) == "Method Not Allowed"


async def test_an_internal_error_is_a_500_without_details(
    http: aiohttp.ClientSession, url: str, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("secret internals /etc/shadow")

    agent.list = broken  # type: ignore[method-assign]
    status, payload = await call(http, "GET", f"{url}/machines")
    assert status == 500
    assert error_of(payload) == "internal error; see the node agent's log"
    assert "secret internals" in caplog.text  # logged for the operator, not sent
