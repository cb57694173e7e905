"""A local ARM-compatible server for AKS agent pools, so the real Azure SDK path can be tested.

Why: the Azure provider must run *unchanged* (same SDK pipeline: bearer auth, retries, LRO
polling) against something local; only the endpoint, its CA and a test token differ. This serves
the four agent-pool routes plus operation status, as azure-mgmt-containerservice expects
(reference section 3):

* PUT   ``.../managedClusters/{c}/agentPools/{p}``  -> 201/200, body with a non-terminal
  provisioningState, ``Azure-AsyncOperation`` + ``Retry-After``; 409 while an operation runs
* GET   same -> 200 or 404 ``NotFound`` "Agent Pool not found"
* DELETE same -> 202 with ``Azure-AsyncOperation`` and ``Location``, or 204 when absent
* GET   ``.../agentPools`` -> ``{"value": [...], "nextLink"?}`` (pages of ``page_size``)
* GET   operation URL -> ``{"status": InProgress|Succeeded|Failed, "error"?}``;
  ``operationresults`` (Location) -> 202 while running, 204 when done

It speaks HTTPS with a self-signed certificate (the SDK refuses bearer tokens over HTTP); pass
`ArmServer.ca_path` as ``connection_verify``. When a create operation succeeds, it plays AKS and
registers the pool's node through a `NodeSink` (a KWOK node on the local cluster, or an
in-memory one in tests); on delete it removes it.

Faults are injectable (`Fault`): quota / SKU (synchronous 400 or LRO ``Failed``), 429 with
Retry-After, 5xx, 401. Control endpoints for out-of-process use: ``POST /_fake/faults``,
``POST /_fake/reset``, ``GET /_fake/stats`` (request counts, also per pool).

CLI::

    python -m kaito_gpu_provisioner.testing.arm_server --port 8443 --kubeconfig KUBECONFIG
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from kaito_gpu_provisioner.azure.pools import POOL_NAME
from kaito_gpu_provisioner.testing.aks_nodes import aks_node, node_name

logger = logging.getLogger(__name__)

_POOLS = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.ContainerService/managedClusters/(?P<cluster>[^/]+)/agentPools"
    r"(?:/(?P<pool>[^/]+))?/?$",
    re.IGNORECASE,
)
_OPERATION = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerService/locations/"
    r"(?P<loc>[^/]+)/(?P<kind>operations|operationresults)/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
POOL_TYPE = "Microsoft.ContainerService/managedClusters/agentPools"

FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "quota": (
        400,
        "QuotaExceeded",
        "Operation could not be completed as it results in exceeding approved {family} Cores "
        "quota. Additional details - Deployment Model: Resource Manager, Location: {location}, "
        "Current Limit: 0, Current Usage: 0, Additional Required: {cores}.",
    ),
    "sku": (
        400,
        "SkuNotAvailable",
        "The requested VM size {vm_size} is currently not available in location {location}. "
        "Please try another size or deploy to a different location or zones.",
    ),
    "throttle": (429, "TooManyRequests", "Too many requests, please retry after {retry_after}s."),
    "server": (500, "InternalServerError", "An internal error occurred (injected)."),
    "unavailable": (503, "ServiceUnavailable", "The service is unavailable (injected)."),
    "auth": (401, "InvalidAuthenticationToken", "The access token is invalid (injected)."),
}


@dataclass
class Fault:
    """One injected failure.

    ``kind``: quota | sku | throttle | server | unavailable | auth. ``method``: which requests
    it hits (PUT, GET, DELETE or ANY; operation polls count as GET). ``stage``: ``sync`` answers
    the request with the error; ``lro`` (quota/sku on PUT only) accepts the PUT and fails the
    operation, leaving the pool ``Failed``. ``times``: how many requests it hits (-1 = forever).
    """

    kind: str
    method: str = "PUT"
    stage: str = "sync"
    times: int = 1
    retry_after: int = 1
    pool: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_ERRORS:
            raise ValueError(f"kind: {self.kind!r} is not one of {', '.join(FAULT_ERRORS)}")
        if self.method.upper() not in ("PUT", "GET", "DELETE", "ANY"):
            raise ValueError(f"method: {self.method!r} is not PUT, GET, DELETE or ANY")
        if self.stage not in ("sync", "lro"):
            raise ValueError(f"stage: {self.stage!r} is not sync or lro")
        if self.stage == "lro" and self.kind not in ("quota", "sku"):
            raise ValueError(f"stage: lro failures are quota or sku, not {self.kind!r}")
        self.method = self.method.upper()


class NodeSink(Protocol):
    """The "AKS side": what happens to nodes when a pool succeeds or is deleted."""

    def register(self, pool: Mapping[str, Any], *, subscription: str, cluster: str) -> None: ...
    def unregister(self, pool: Mapping[str, Any]) -> None: ...


@dataclass
class _Operation:
    id: str
    kind: str  # "put" | "delete"
    key: tuple[str, str, str, str]
    done_at: float
    status: str = "InProgress"
    error: dict[str, str] | None = None


@dataclass
class _State:
    pools: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, _Operation] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    by_pool: Counter[str] = field(default_factory=Counter)
    puts: Counter[str] = field(default_factory=Counter)


class ArmServer:
    """The server; `start` runs it in a background thread. Thread-safe."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_dir: Path | None = None,
        node_sink: NodeSink | None = None,
        operation_seconds: float = 0.0,
        location: str = "eastus",
        node_resource_group: str = "",
        page_size: int = 50,
        expected_token: str | None = None,
    ) -> None:
        self.node_sink = node_sink
        self.operation_seconds = operation_seconds
        self.location = location
        self.node_resource_group = node_resource_group
        self.page_size = page_size
        self.expected_token = expected_token
        self._state = _State()
        self._lock = threading.RLock()
        self._httpd = _Server((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self.cert_path, key_path = _self_signed(cert_dir or _tmpdir(), host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def ca_path(self) -> Path:
        """The self-signed certificate, which is its own CA: trust it as ``connection_verify``."""
        return self.cert_path

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"https://{host}:{port}"

    def start(self) -> ArmServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever: only if it runs
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ArmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control -------------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._state.faults.append(fault)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._state.requests),
                "total": sum(self._state.requests.values()),
                "by_pool": dict(self._state.by_pool),
                "puts": dict(self._state.puts),
                "pools": {
                    k[3]: v["properties"]["provisioningState"] for k, v in self._state.pools.items()
                },
            }

    def pool(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return next((v for k, v in self._state.pools.items() if k[3] == name.lower()), None)

    # --- request handling (called from handler threads) ----------------------------------------
    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query)
        if path.startswith("/_fake/"):
            return self._control(method, path, body)
        if not headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "AuthenticationFailed", "Authentication failed: no bearer token.")
        token = headers["Authorization"][len("Bearer ") :]
        if self.expected_token is not None and token != self.expected_token:
            return _error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if "api-version" not in query:
            return _error(
                400, "MissingApiVersionParameter", "The api-version query parameter is required."
            )
        if match := _OPERATION.match(path):
            return self._operation(match.group("op"), match.group("kind").lower())
        match = _POOLS.match(path)
        if not match:
            return _error(404, "InvalidResourceType", f"No route for {method} {path}.")
        key = (
            match["sub"].lower(),
            match["rg"].lower(),
            match["cluster"].lower(),
            (match["pool"] or "").lower(),
        )
        with self._lock:
            self._state.requests[f"{method} {'pool' if key[3] else 'list'}"] += 1
            if key[3]:
                self._state.by_pool[key[3]] += 1
                if method == "PUT":
                    self._state.puts[key[3]] += 1
            fault = self._take_fault(method, key[3], stage="sync")
        if fault is not None:
            return self._fault_reply(fault, body)
        if not key[3]:
            return (
                self._list(match, key, query)
                if method == "GET"
                else _error(405, "MethodNotAllowed", method)
            )
        if not POOL_NAME.match(match["pool"]):
            return _error(400, "InvalidParameter", f"Agent pool name {match['pool']!r} is invalid.")
        if method == "PUT":
            return self._put(match, key, body)
        if method == "GET":
            return self._get(key)
        if method == "DELETE":
            return self._delete(match, key)
        return _error(405, "MethodNotAllowed", f"{method} is not supported.")

    def _take_fault(self, method: str, pool: str, *, stage: str) -> Fault | None:
        for fault in self._state.faults:
            if fault.stage != stage or fault.method not in (method, "ANY"):
                continue
            if fault.pool is not None and fault.pool.lower() != pool:
                continue
            if fault.times > 0:
                fault.times -= 1
            if fault.times == 0:
                self._state.faults.remove(fault)
            return fault
        return None

    def _fault_reply(self, fault: Fault, body: bytes) -> _Reply:
        status, code, template = FAULT_ERRORS[fault.kind]
        message = _fault_message(template, fault, self.location, body)
        headers = {"Retry-After": str(fault.retry_after)} if status in (429, 503) else {}
        return _error(status, code, message, headers)

    def _base(self, match: re.Match[str]) -> str:
        return (
            f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}/providers/"
            f"Microsoft.ContainerService/managedClusters/{match['cluster']}/agentPools"
        )

    def _put(self, match: re.Match[str], key: tuple[str, str, str, str], body: bytes) -> _Reply:
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return _error(400, "InvalidRequestContent", "The request body is not valid JSON.")
        props = request.get("properties")
        if not isinstance(props, dict) or not props.get("vmSize"):
            return _error(400, "InvalidParameter", "properties.vmSize is required.")
        with self._lock:
            existing = self._state.pools.get(key)
            if existing is not None and self._busy(key):
                return _error(
                    409,
                    "OperationNotAllowed",
                    "Operation is not allowed because there's an in progress create node pool "
                    "operation on this agent pool.",
                )
            lro_fault = self._take_fault("PUT", key[3], stage="lro")
            state = "Updating" if existing else "Creating"
            pool = {
                "id": f"{self._base(match)}/{match['pool']}",
                "name": match["pool"],
                "type": POOL_TYPE,
                "properties": {
                    **props,
                    "provisioningState": state,
                    "powerState": {"code": "Running"},
                    "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202611.01.0",
                    "orchestratorVersion": "1.35.4",
                    "mode": props.get("mode", "User"),
                },
            }
            self._state.pools[key] = pool
            op = self._new_operation("put", key)
            if lro_fault is not None:
                _, code, template = FAULT_ERRORS[lro_fault.kind]
                op.error = {
                    "code": code,
                    "message": _fault_message(template, lro_fault, self.location, body),
                }
            reply_body = json.loads(json.dumps(pool))
        self._schedule(op, match["sub"], match["cluster"])
        return _Reply(200 if existing else 201, reply_body, self._op_headers(op, match["sub"]))

    def _get(self, key: tuple[str, str, str, str]) -> _Reply:
        with self._lock:
            pool = self._state.pools.get(key)
            if pool is None:
                return _error(404, "NotFound", f"Agent Pool not found: {key[3]}")
            return _Reply(200, json.loads(json.dumps(pool)), {})

    def _delete(self, match: re.Match[str], key: tuple[str, str, str, str]) -> _Reply:
        with self._lock:
            pool = self._state.pools.get(key)
            if pool is None:
                return _Reply(204, None, {})
            if self._busy(key):
                return _error(
                    409,
                    "OperationNotAllowed",
                    "Operation is not allowed: another operation is in progress.",
                )
            pool["properties"]["provisioningState"] = "Deleting"
            op = self._new_operation("delete", key)
        self._schedule(op, match["sub"], match["cluster"])
        headers = self._op_headers(op, match["sub"])
        headers["Location"] = headers["Azure-AsyncOperation"].replace(
            "/operations/", "/operationresults/"
        )
        return _Reply(202, None, headers)

    def _list(
        self, match: re.Match[str], key: tuple[str, ...], query: Mapping[str, list[str]]
    ) -> _Reply:
        skip = int((query.get("$skipToken") or ["0"])[0])
        with self._lock:
            pools = [v for k, v in sorted(self._state.pools.items()) if k[:3] == key[:3]]
            page = json.loads(json.dumps(pools[skip : skip + self.page_size]))
        body: dict[str, Any] = {"value": page}
        if skip + self.page_size < len(pools):
            token = skip + self.page_size
            base = f"{self.url}{self._base(match)}"
            body["nextLink"] = f"{base}?api-version=2026-08-01&$skipToken={token}"
        return _Reply(200, body, {})

    def _busy(self, key: tuple[str, str, str, str]) -> bool:
        return any(
            op.key == key and op.status == "InProgress" for op in self._state.operations.values()
        )

    def _new_operation(self, kind: str, key: tuple[str, str, str, str]) -> _Operation:
        op = _Operation(
            id=str(uuid.uuid4()),
            kind=kind,
            key=key,
            done_at=time.monotonic() + self.operation_seconds,
        )
        self._state.operations[op.id] = op
        return op

    def _op_headers(self, op: _Operation, sub: str) -> dict[str, str]:
        url = (
            f"{self.url}/subscriptions/{sub}/providers/Microsoft.ContainerService/"
            f"locations/{self.location}/operations/{op.id}?api-version=2016-03-30"
        )
        return {"Azure-AsyncOperation": url, "Retry-After": "1"}

    def _schedule(self, op: _Operation, sub: str, cluster: str) -> None:
        if self.operation_seconds <= 0:
            self._complete(op, sub, cluster)
            return
        timer = threading.Timer(self.operation_seconds, self._complete, args=(op, sub, cluster))
        timer.daemon = True
        timer.start()

    def _complete(self, op: _Operation, sub: str, cluster: str) -> None:
        """Finish an operation, doing what AKS does to nodes first (outside the lock)."""
        with self._lock:
            pool = json.loads(json.dumps(self._state.pools.get(op.key)))
        error = op.error
        if pool and op.kind == "put" and error is None and self.node_sink is not None:
            try:
                self.node_sink.register(pool, subscription=sub, cluster=cluster)
            except Exception as err:  # boundary: report the sink's failure as the LRO's error
                logger.exception("registering the node of pool %s failed", op.key[3])
                error = {"code": "NodeRegistrationFailed", "message": str(err)[:500]}
        if pool and op.kind == "delete" and self.node_sink is not None:
            try:
                self.node_sink.unregister(pool)
            except Exception:  # boundary: the pool is deleted regardless
                logger.exception("removing the node of pool %s failed", op.key[3])
        with self._lock:
            stored = self._state.pools.get(op.key)
            if op.kind == "delete":
                self._state.pools.pop(op.key, None)
                op.status = "Succeeded"
            elif error is not None:
                op.status, op.error = "Failed", error
                if stored is not None:
                    stored["properties"]["provisioningState"] = "Failed"
                    stored["properties"]["status"] = {"provisioningError": dict(error)}
            else:
                op.status = "Succeeded"
                if stored is not None:
                    stored["properties"]["provisioningState"] = "Succeeded"
                    stored["properties"].pop("status", None)

    def _operation(self, op_id: str, kind: str) -> _Reply:
        with self._lock:
            self._state.requests[f"GET {kind}"] += 1
            op = self._state.operations.get(op_id)
            if op is None:
                return _error(404, "NotFound", f"Operation {op_id} not found.")
            self._state.by_pool[op.key[3]] += 1
            fault = self._take_fault("GET", op.key[3], stage="sync")
        if fault is not None:
            return self._fault_reply(fault, b"")
        if kind == "operationresults":
            return _Reply(
                202 if op.status == "InProgress" else 204,
                None,
                {"Retry-After": "1"} if op.status == "InProgress" else {},
            )
        body: dict[str, Any] = {"id": op.id, "name": op.id, "status": op.status}
        if op.error is not None:
            body["error"] = op.error
        headers = {"Retry-After": "1"} if op.status == "InProgress" else {}
        return _Reply(200, body, headers)

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        if method == "POST" and path == "/_fake/faults":
            try:
                self.add_fault(Fault(**json.loads(body or b"{}")))
            except (TypeError, ValueError) as err:
                return _error(400, "InvalidFault", str(err))
            return _Reply(204, None, {})
        if method == "POST" and path == "/_fake/reset":
            self.reset()
            return _Reply(204, None, {})
        if method == "GET" and path == "/_fake/stats":
            return _Reply(200, self.stats(), {})
        if method == "GET" and path == "/_fake/faults":
            with self._lock:
                return _Reply(200, {"faults": [asdict(f) for f in self._state.faults]}, {})
        return _error(404, "NotFound", f"no control route {method} {path}")


class _Server(ThreadingHTTPServer):
    # The stdlib default backlog is 5: a burst of concurrent TLS connects (100 claims) overflows
    # it and clients wait for SYN retransmits (seconds). ARM itself has no such limit.
    request_queue_size = 1024
    daemon_threads = True


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any
    headers: dict[str, str]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, {"error": {"code": code, "message": message}}, headers or {})


def _fault_message(template: str, fault: Fault, location: str, body: bytes) -> str:
    try:
        props = (json.loads(body or b"{}") or {}).get("properties") or {}
    except json.JSONDecodeError:
        props = {}
    vm_size = str(props.get("vmSize", "unknown"))
    family = re.sub(r"^Standard_", "standard", vm_size).split("_")[0] + "Family"
    return template.format(
        vm_size=vm_size, family=family, location=location, cores=6, retry_after=fault.retry_after
    )


def _handler_for(server: ArmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without NODELAY, Nagle plus the
            # client's delayed ACK adds ~40 ms to every response on a kept-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = server.handle(self.command, self.path, dict(self.headers.items()), body)
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in {"x-ms-request-id": str(uuid.uuid4()), **reply.headers}.items():
                self.send_header(name, value)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_DELETE = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("arm: " + format, *args)

    return Handler


def _tmpdir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="kaito-arm-"))


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host``, 127.0.0.1 and localhost (it is its own CA)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "arm-fake.crt", directory / "arm-fake.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kaito local ARM fake")])
    alt: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    if host not in ("127.0.0.1", "localhost", "0.0.0.0"):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class KubeNodeSink:
    """Registers AKS-like KWOK nodes on a real cluster with the synchronous kubernetes client."""

    def __init__(self, kubeconfig: str | None, *, node_resource_group: str = "") -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        self._core = client.CoreV1Api(api)
        self._node_rg = node_resource_group

    def register(self, pool: Mapping[str, Any], *, subscription: str, cluster: str) -> None:
        from kubernetes.client.exceptions import ApiException

        node_rg = self._node_rg or f"mc_fake_{cluster}_local".lower()
        body = aks_node(
            pool, subscription=subscription, node_resource_group=node_rg, cluster=cluster
        )
        try:
            self._core.create_node(body)  # type: ignore[arg-type]  # the client accepts dicts
        except ApiException as err:
            if err.status != 409:
                raise

    def unregister(self, pool: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.delete_node(node_name(str(pool["name"])))
        except ApiException as err:
            if err.status != 404:
                raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaito_gpu_provisioner.testing.arm_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--kubeconfig", help="register KWOK nodes on this cluster (else none)")
    parser.add_argument("--cert-dir", type=Path, help="where the self-signed cert/key are kept")
    parser.add_argument("--operation-seconds", type=float, default=0.0, help="LRO duration")
    parser.add_argument("--location", default="eastus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sink: NodeSink | None = KubeNodeSink(args.kubeconfig) if args.kubeconfig else None
    server = ArmServer(
        host=args.host,
        port=args.port,
        cert_dir=args.cert_dir,
        node_sink=sink,
        operation_seconds=args.operation_seconds,
        location=args.location,
    ).start()
    sys.stdout.write(json.dumps({"url": server.url, "ca": str(server.ca_path)}) + "\n")
    sys.stdout.flush()
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
