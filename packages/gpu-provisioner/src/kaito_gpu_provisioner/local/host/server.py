"""The node agent's HTTP API (the local cloud's API), served on the host's node-network address.

Why: the gpu-provisioner runs in a pod, unprivileged; it asks for machines here, as its Azure
provider asks ARM for agent pools. Every request but ``/healthz`` needs the bearer token from
the agent's token file (the chart passes it to the provisioner in a Secret). Errors are JSON
``{"error": "..."}`` with a 4xx/5xx status, never a traceback.

    GET    /healthz
    GET    /machines                 -> MachineList
    GET    /machines/{name}          -> Machine | 404
    PUT    /machines/{name}  Spec    -> Machine (201 created, 200 exists) | 409 | 422
    DELETE /machines/{name}          -> Machine (202, being deleted) | 404
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from kaito_gpu_provisioner.local.host.agent import Agent, Conflict
from kaito_gpu_provisioner.local.machines import AgentError, MachineList, MachineSpec

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AGENT_KEY = web.AppKey("agent", Agent)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(AgentError(error=message).model_dump(), status=status)


def _json(model: MachineList | object, status: int = 200) -> web.Response:
    body = model.model_dump_json() if hasattr(model, "model_dump_json") else str(model)  # type: ignore[attr-defined]
    return web.Response(text=body, status=status, content_type="application/json")


def _auth_middleware(token: str) -> Middleware:
    """Bearer-token check for everything but /healthz; errors as JSON, never a traceback."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        # Header bytes that are not UTF-8 arrive as surrogates: compare them as they came.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            return _error(401, "missing or wrong bearer token (see the node agent's token file)")
        try:
            return await handler(request)
        except web.HTTPException as err:
            return _error(err.status, err.reason)
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return _error(500, "internal error; see the node agent's log")

    return auth


def make_app(agent: Agent, token: str) -> web.Application:
    app = web.Application(middlewares=[_auth_middleware(token)])
    app[AGENT_KEY] = agent

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def list_machines(_: web.Request) -> web.Response:
        return _json(MachineList(items=agent.list()))

    async def get_machine(request: web.Request) -> web.Response:
        machine = agent.get(request.match_info["name"])
        if machine is None:
            return _error(404, f"machine {request.match_info['name']!r} not found")
        return _json(machine)

    async def put_machine(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            spec = MachineSpec.model_validate_json(await request.read())
        except ValidationError as err:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
            )
            return _error(422, f"invalid machine spec: {details}")
        if spec.name != name:
            return _error(422, f"name: {spec.name!r} in the body, {name!r} in the path")
        try:
            machine, created = await agent.put(spec)
        except Conflict as err:
            return _error(409, str(err))
        return _json(machine, 201 if created else 200)

    async def delete_machine(request: web.Request) -> web.Response:
        machine = await agent.delete(request.match_info["name"])
        if machine is None:
            return _error(404, f"machine {request.match_info['name']!r} not found")
        return _json(machine, 202)

    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/machines", list_machines),
            web.get("/machines/{name}", get_machine),
            web.put("/machines/{name}", put_machine),
            web.delete("/machines/{name}", delete_machine),
        ]
    )
    return app


async def serve(agent: Agent, host: str, port: int, token: str) -> None:
    """Serve until cancelled, with the reconcile loop running beside the API."""
    runner = web.AppRunner(make_app(agent, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    logger.info("node agent on http://%s:%d (%d machines)", host, port, len(agent.machines))
    loop_task = asyncio.create_task(agent.run())
    try:
        await asyncio.Event().wait()
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
        await runner.cleanup()
