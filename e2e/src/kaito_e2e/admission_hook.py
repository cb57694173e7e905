"""A validating webhook served from the test process, for the local cluster's API server.

Why: suites that check what the controller's admission function admits on a real API server
(``test_examples_apply``, ``test_upstream_kaito_workspaces``) serve that function over HTTPS
from the test host under a webhook name of their own, independent of the chart's
``validation.workspace.kaito.sh`` (which other suites start and stop). The registration uses
failurePolicy Ignore, so a test killed mid-run blocks nobody; the suites record the reviews to
prove the webhook was in the path. ``review`` gets the AdmissionReview's ``request`` and returns
its ``response`` (``uid``, ``allowed``, optional ``status`` and ``warnings``).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Review", "serve", "webhook_configuration"]

Review = Callable[[dict[str, Any]], dict[str, Any]]


def serve(review: Review, cert_file: Path, key_file: Path) -> ThreadingHTTPServer:
    """Serve ``review`` on 127.0.0.1 (a free port) over TLS, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": review(request["request"]),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def webhook_configuration(name: str, port: int, ca_pem: bytes) -> dict[str, Any]:
    """A ValidatingWebhookConfiguration ``name`` that sends Workspace creates and updates in
    e2e namespaces (label ``kaito.sh/e2e=true``) to ``https://127.0.0.1:<port>/validate``."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": name,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                # Ignore: a test killed mid-run must not block other suites' Workspaces. The
                # recorded reviews prove the webhook was called.
                "failurePolicy": "Ignore",
                "timeoutSeconds": 10,
                "matchPolicy": "Equivalent",  # v1alpha1 requests arrive as v1beta1, as the chart's
                # Only e2e namespaces (the namespace fixture's label), never users' or the system's.
                "namespaceSelector": {"matchLabels": {"kaito.sh/e2e": "true"}},
                "rules": [
                    {
                        "apiGroups": ["kaito.sh"],
                        "apiVersions": ["v1beta1"],
                        "resources": ["workspaces"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
    }
