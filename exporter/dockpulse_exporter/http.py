"""Serving `/metrics` from memory: a scrape never waits on Docker or on a render of containers."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from dockpulse_exporter.exposition import Exposition

LANDING_PAGE = b"""<html><head><title>dockpulse exporter</title></head><body>
<h1>dockpulse exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>"""


def make_server(host: str, port: int, exposition: Exposition) -> ThreadingHTTPServer:
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
