"""Serving `/metrics` from memory: a scrape never waits on Docker or on a render of containers.

Hardened against slow or idle clients: each connection must send its request within
`read_timeout` (a total deadline, not per byte, so a client dribbling one byte at a time is cut
too), and at most `max_connections` are served at once; past that a new connection is closed
at once rather than given a thread.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from dockpulse_exporter.exposition import Exposition

LANDING_PAGE = b"""<html><head><title>dockpulse exporter</title></head><body>
<h1>dockpulse exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>"""


class Deadlines:
    """One thread that shuts down connections whose request did not arrive in time (cheaper
    than a timer thread per connection)."""

    def __init__(self, check_every: float = 0.25) -> None:
        self._pending: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._check_every = check_every
        threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()

    def watch(self, connection: socket.socket, seconds: float) -> None:
        with self._lock:
            self._pending[connection] = time.monotonic() + seconds

    def done(self, connection: socket.socket) -> None:
        with self._lock:
            self._pending.pop(connection, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._check_every)
            now = time.monotonic()
            with self._lock:
                expired = [c for c, deadline in self._pending.items() if deadline <= now]
                for connection in expired:
                    del self._pending[connection]
            for connection in expired:
                with suppress(OSError):  # unblocks the handler's read; it then ends
                    connection.shutdown(socket.SHUT_RDWR)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused_total = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_total += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(
    host: str,
    port: int,
    exposition: Exposition,
    read_timeout: float = 10.0,
    max_connections: int = 32,
) -> BoundedHTTPServer:
    deadlines = Deadlines()

    class Handler(BaseHTTPRequestHandler):
        timeout = read_timeout  # per socket operation; the deadline below bounds the total

        def setup(self) -> None:
            super().setup()
            deadlines.watch(self.connection, read_timeout)

        def parse_request(self) -> bool:
            ok = super().parse_request()
            deadlines.done(self.connection)
            return ok

        def finish(self) -> None:
            deadlines.done(self.connection)
            super().finish()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
                chunks = exposition.body(gzipped)
                self._reply(200, chunks, CONTENT_TYPE_LATEST, "gzip" if gzipped else None)
            elif path in ("/-/healthy", "/healthz"):
                self._reply(200, [b"OK\n"], "text/plain")
            elif path == "/":
                self._reply(200, [LANDING_PAGE], "text/html")
            else:
                self._reply(404, [b"not found\n"], "text/plain")

        def _reply(
            self, status: int, chunks: list[bytes], content_type: str, encoding: str | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(sum(map(len, chunks))))
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    return BoundedHTTPServer((host, port), Handler, max_connections)
