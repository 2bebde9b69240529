"""Serving `/metrics` from memory: rendered once per new sample, not per scrape."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LANDING_PAGE = b"""<html><head><title>dockpulse exporter</title></head><body>
<h1>dockpulse exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>"""


class CachedExposition:
    """Renders the registry when `generation()` changes; scrapes get the cached bytes."""

    def __init__(self, registry: CollectorRegistry, generation: Callable[[], object]) -> None:
        self._registry = registry
        self._generation = generation
        self._lock = threading.Lock()
        self._rendered_for: object = None
        self._body = b""
        self._gzipped: bytes | None = None

    def body(self, gzipped: bool = False) -> bytes:
        """The latest exposition; gzip-compressed once per new sample when asked."""
        current = self._generation()
        with self._lock:
            if current != self._rendered_for:
                self._body = generate_latest(self._registry)
                self._gzipped = None
                self._rendered_for = current
            if not gzipped:
                return self._body
            if self._gzipped is None:
                self._gzipped = gzip.compress(self._body, compresslevel=1)
            return self._gzipped


def make_server(host: str, port: int, exposition: CachedExposition) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
                body = exposition.body(gzipped)
                self._reply(200, body, CONTENT_TYPE_LATEST, "gzip" if gzipped else None)
            elif path in ("/-/healthy", "/healthz"):
                self._reply(200, b"OK\n", "text/plain")
            elif path == "/":
                self._reply(200, LANDING_PAGE, "text/html")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(
            self, status: int, body: bytes, content_type: str, encoding: str | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
