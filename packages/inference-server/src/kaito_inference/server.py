"""``run_server(config)``: apply process settings, build the app and run uvicorn until stopped.

Exits non-zero when the model fails to load, so Kubernetes restarts the pod and shows the error.
"""

from __future__ import annotations

import logging

import uvicorn

from kaito_inference.app import create_app
from kaito_inference.config import ServerConfig, export_hub_env
from kaito_inference.logs import configure_logging

logger = logging.getLogger(__name__)


def run_server(config: ServerConfig) -> int:
    """Serve until SIGTERM; return the process exit code."""
    configure_logging(config)
    export_hub_env(config)
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(exc: BaseException) -> None:
        failed.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(config, on_fatal=on_fatal)
    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_config=None, access_log=False
    )
    server = uvicorn.Server(uv_config)
    logger.info("kaito-inference listening on %s:%d", config.host, config.port)
    server.run()
    return 1 if failed else 0
