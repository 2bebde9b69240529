"""Serving `/metrics` from memory: a scrape never waits on Docker or on a render of containers.

Hardened against slow or idle clients by the shared `BoundedHTTPServer`: each request must
arrive within `read_timeout`, and at most `max_connections` are served at once. HTTP/1.1
keep-alive, as the relay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST

from dockpulse.http_server import BoundedHTTPServer, DeadlineHandler
from dockpulse.web_config import WebConfig
from dockpulse_exporter.exposition import Exposition

LANDING_PAGE = b"""<html><head><title>dockpulse exporter</title></head><body>
<h1>dockpulse exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>"""
# GET /api/v1/containers/<name or id>/context: why a container went down, for the alert mail.
CONTEXT_PREFIX, CONTEXT_SUFFIX = "/api/v1/containers/", "/context"
ContainerContextRoute = Callable[[str], tuple[int, dict[str, Any]]]


def make_server(
    host: str,
    port: int,
    exposition: Exposition,
    read_timeout: float = 10.0,
    max_connections: int = 32,
    web_config: WebConfig | None = None,
    container_context: ContainerContextRoute | None = None,
) -> BoundedHTTPServer:
    """`container_context(ref)` -> (status, JSON body) answers the context route (context.py);
    it runs in the request's own thread, never in the scrape's path."""

    class Handler(DeadlineHandler):
        # Keep-alive: Prometheus reuses its connection, so a TLS scrape pays the handshake
        # once per connection (an idle one is closed after `read_timeout`).
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024  # headers and body leave together, flushed per request

        def do_GET(self) -> None:
            self.request_read()
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
                chunks = exposition.body(gzipped)
                self._reply(200, chunks, CONTENT_TYPE_LATEST, "gzip" if gzipped else None)
            elif path in ("/-/healthy", "/healthz"):
                self._reply(200, [b"OK\n"], "text/plain")
            elif (
                container_context is not None
                and path.startswith(CONTEXT_PREFIX)
                and path.endswith(CONTEXT_SUFFIX)
            ):
                ref = unquote(path[len(CONTEXT_PREFIX) : -len(CONTEXT_SUFFIX)])
                status, body = container_context(ref)
                self._reply(status, [json.dumps(body).encode()], "application/json")
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

    return BoundedHTTPServer(
        (host, port), Handler, max_connections, read_timeout, web_config=web_config
    )
