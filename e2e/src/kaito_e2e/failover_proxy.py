"""A TCP pass-through that sends each connection to the first backend that accepts it.

Why: in a cluster the webhook Service reaches every ready controller replica; the HA suite
runs the replicas as host processes, so this stands in for the Service's endpoints. It does not
terminate TLS: the API server verifies whichever replica answers against the published CA
bundle, which is what proves the replicas share one certificate. It also counts the bytes each
way, which is how the scoped-watch bench measures a process's API traffic.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Sequence


class FailoverProxy:
    """Listen on 127.0.0.1:``port``; round-robin over ``backends``, skipping dead ones.

    A backend is a port on 127.0.0.1 or a ``(host, port)`` pair.
    """

    def __init__(self, port: int, backends: Sequence[int | tuple[str, int]]) -> None:
        self.port = port
        self.backends = [("127.0.0.1", b) if isinstance(b, int) else b for b in backends]
        self._turn = itertools.count()
        self._server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._server.settimeout(0.5)
        self._stop = threading.Event()
        self.served: dict[tuple[str, int], int] = dict.fromkeys(self.backends, 0)
        self.bytes_up = 0  # client -> backend
        self.bytes_down = 0  # backend -> client
        self._count = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="failover-proxy", daemon=True)

    def __enter__(self) -> FailoverProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect(self) -> tuple[socket.socket, tuple[str, int]] | None:
        start = next(self._turn)
        for i in range(len(self.backends)):
            addr = self.backends[(start + i) % len(self.backends)]
            try:
                return socket.create_connection(addr, timeout=2), addr
            except OSError:
                continue
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        backend, addr = upstream
        self.served[addr] += 1
        backend.settimeout(None)
        pipes = [
            threading.Thread(target=self._pipe, args=(client, backend, True), daemon=True),
            threading.Thread(target=self._pipe, args=(backend, client, False), daemon=True),
        ]
        for p in pipes:
            p.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                with self._count:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
