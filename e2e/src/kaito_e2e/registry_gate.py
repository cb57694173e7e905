"""The local registry's front door: anyone may pull, only the cluster's user may push.

Why: Debian's docker-registry authenticates every request or none. A cluster registry that
nodes and pods pull from anonymously (like a public repository, or ACR attached to AKS) but that
refuses pushes without the right credentials needs both: pods that pull adapters have no
credentials of their own, and a tuning Job with a wrong push secret must fail the way it would
against a real registry. So the registry listens on loopback without auth, and this gate on the
node network's address forwards to it:

* ``GET``/``HEAD`` of repository content: forwarded without credentials;
* the ``/v2/`` ping, and every write (``POST``/``PUT``/``PATCH``/``DELETE``): need HTTP Basic
  credentials of the one user (``401`` with a ``WWW-Authenticate: Basic`` challenge otherwise,
  which is what makes buildah, skopeo and oras send them);
* any request that carries credentials must carry the right ones.

Bodies stream through in both directions (multi-GB layers). The pure decision is
:func:`decide`; the rest is an aiohttp proxy.

    python -m kaito_e2e.registry_gate --listen HOST:PORT --upstream 127.0.0.1:PORT \\
        --user kaito --password-file FILE
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import logging
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

logger = logging.getLogger(__name__)

REALM = "kaito-local"
READ_METHODS = frozenset({"GET", "HEAD"})
# RFC 7230 hop-by-hop headers are not forwarded; Host is kept (the registry builds URLs from it).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
CHUNK = 1 << 20


def credentials_ok(header: str | None, user: str, password: str) -> bool | None:
    """True/False for right/wrong Basic credentials, None when the request carries none."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return user_ok and password_ok


def decide(method: str, path: str, authorization: str | None, user: str, password: str) -> int:
    """0 to forward the request, or the status to answer it with (401)."""
    auth = credentials_ok(authorization, user, password)
    if auth is False:
        return 401
    if auth is True:
        return 0
    anonymous_read = method in READ_METHODS and path.rstrip("/") != "/v2"
    return 0 if anonymous_read else 401


def _challenge() -> web.Response:
    body = (
        '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required: pulls are '
        'anonymous, pushes need the cluster registry user (hack/local-cluster.sh info)"}]}'
    )
    return web.Response(
        status=401,
        text=body,
        content_type="application/json",
        headers={
            "WWW-Authenticate": f'Basic realm="{REALM}"',
            "Docker-Distribution-API-Version": "registry/2.0",
        },
    )


def make_app(upstream: str, user: str, password: str) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def open_session(app: web.Application) -> None:
        app[session_key] = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_read=600)
        )

    async def close_session(app: web.Application) -> None:
        await app[session_key].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        if decide(
            request.method, request.path, request.headers.get("Authorization"), user, password
        ):
            return _challenge()
        # A multidict: clients send several Accept headers (one per manifest type).
        headers = CIMultiDict(
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"
        )
        body = request.content if request.body_exists else None
        async with request.app[session_key].request(
            request.method,
            f"http://{upstream}{request.rel_url}",
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in answer.content.iter_chunked(CHUNK):
                    await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=0)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="kaito_e2e.registry_gate", description=__doc__.split("\n")[0] if __doc__ else ""
    )
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the registry (no auth)")
    parser.add_argument("--user", default="kaito")
    parser.add_argument("--password-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, port = args.listen.rsplit(":", 1)
    password = args.password_file.read_text().strip()
    web.run_app(
        make_app(args.upstream, args.user, password),
        host=host,
        port=int(port),
        access_log=None,
        print=lambda *_: logger.info(
            "registry gate on http://%s -> %s", args.listen, args.upstream
        ),
    )


if __name__ == "__main__":
    main()
