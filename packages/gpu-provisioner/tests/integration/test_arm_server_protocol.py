"""The ARM fake's wire protocol, request by request (what azure-mgmt-containerservice relies on):
status codes, LRO headers, operation bodies, 409 while an operation runs, 404 wording, paging,
api-version and auth checks, Location-style polling, fault validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kaito_gpu_provisioner.testing.arm_server import ArmServer, Fault

pytestmark = pytest.mark.integration
BASE = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerService/"
    "managedClusters/aks/agentPools"
)
AUTH = {"Authorization": "Bearer t"}
BODY = json.dumps({"properties": {"vmSize": "Standard_NC6s_v3", "count": 1}}).encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ArmServer]:
    srv = ArmServer(cert_dir=tmp_path, operation_seconds=60)  # operations stay InProgress
    yield srv
    srv.stop()


def call(server: ArmServer, method: str, path: str, body: bytes = b"") -> Any:
    return server.handle(method, path, AUTH, body)


def test_put_is_an_async_operation_and_conflicts_while_running(server: ArmServer) -> None:
    reply = call(server, "PUT", f"{BASE}/ws1?api-version=2026-08-01", BODY)
    assert reply.status == 201
    assert reply.body["properties"]["provisioningState"] == "Creating"
    assert reply.headers["Retry-After"] == "1"
    op_url = reply.headers["Azure-AsyncOperation"]
    assert "/providers/Microsoft.ContainerService/locations/eastus/operations/" in op_url
    op_path = op_url.split(server.url, 1)[1]
    assert call(server, "GET", op_path).body["status"] == "InProgress"
    again = call(server, "PUT", f"{BASE}/ws1?api-version=2026-08-01", BODY)
    assert again.status == 409
    assert again.body["error"]["code"] == "OperationNotAllowed"
    assert "in progress create node pool operation" in again.body["error"]["message"]


def test_missing_pool_is_404_not_found_with_gp_wording(server: ArmServer) -> None:
    reply = call(server, "GET", f"{BASE}/nope?api-version=1")
    assert reply.status == 404
    assert reply.body["error"]["code"] == "NotFound"
    assert "Agent Pool not found" in reply.body["error"]["message"]
    assert call(server, "DELETE", f"{BASE}/nope?api-version=1").status == 204


def test_delete_answers_202_with_both_polling_headers(server: ArmServer) -> None:
    server.operation_seconds = 0
    call(server, "PUT", f"{BASE}/ws1?api-version=1", BODY)
    server.operation_seconds = 60
    reply = call(server, "DELETE", f"{BASE}/ws1?api-version=1")
    assert reply.status == 202
    location = reply.headers["Location"].split(server.url, 1)[1]
    assert "/operationresults/" in location
    assert call(server, "GET", location).status == 202  # still running
    assert (
        call(server, "GET", f"{BASE}/ws1?api-version=1").body["properties"]["provisioningState"]
        == "Deleting"
    )


def test_list_pages_with_absolute_next_link(server: ArmServer) -> None:
    server.operation_seconds, server.page_size = 0, 2
    for name in ("a1", "b2", "c3"):
        call(server, "PUT", f"{BASE}/{name}?api-version=1", BODY)
    first = call(server, "GET", f"{BASE}?api-version=1")
    assert [p["name"] for p in first.body["value"]] == ["a1", "b2"]
    assert first.body["nextLink"].startswith(server.url)
    second = call(server, "GET", first.body["nextLink"].split(server.url, 1)[1])
    assert [p["name"] for p in second.body["value"]] == ["c3"]
    assert "nextLink" not in second.body


@pytest.mark.parametrize(
    ("headers", "path", "status", "code"),
    [
        ({}, f"{BASE}/ws1?api-version=1", 401, "AuthenticationFailed"),
        (AUTH, f"{BASE}/ws1", 400, "MissingApiVersionParameter"),
        (AUTH, f"{BASE}/Bad_Name?api-version=1", 400, "InvalidParameter"),
    ],
)
def test_request_validation(
    server: ArmServer, headers: dict[str, str], path: str, status: int, code: str
) -> None:
    reply = server.handle("PUT", path, headers, BODY)
    assert (reply.status, reply.body["error"]["code"]) == (status, code)


def test_paths_are_case_insensitive(server: ArmServer) -> None:
    path = BASE.replace("managedClusters", "managedclusters").replace("agentPools", "agentpools")
    assert call(server, "PUT", f"{path}/ws1?api-version=1", BODY).status == 201


def test_throttle_fault_sets_retry_after_and_expires(server: ArmServer) -> None:
    server.add_fault(Fault("throttle", method="GET", times=1, retry_after=7))
    first = call(server, "GET", f"{BASE}/x?api-version=1")
    assert (first.status, first.headers["Retry-After"]) == (429, "7")
    assert call(server, "GET", f"{BASE}/x?api-version=1").status == 404


def test_fault_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault("boom")
    with pytest.raises(ValueError, match="stage"):
        Fault("throttle", stage="lro")
