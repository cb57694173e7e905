"""One logging set-up for the job's commands: plain lines on stdout, read with `kubectl logs`."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    """Send the package's and the training libraries' log records to stdout, one per line.

    A no-op for the root handler when one is already installed (pytest, an embedding program).
    """
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stdout,
    )
    # Registry and HTTP client libraries are chatty at INFO; their failures surface as our errors.
    for noisy in ("httpx", "httpcore", "urllib3", "oras"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
