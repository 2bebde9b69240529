"""An HTTP server that a slow or idle client cannot hold; the exporter and the relay serve with it.

A thread per connection and at most `max_connections` at once; past that a new connection gets
`busy_reply` (if any) and is closed rather than given a thread. Every request must arrive whole
within `read_timeout`: a total deadline, not per byte, so a client dribbling one byte at a time
is cut too. One reaper thread shuts down the connections past their deadline.

With a `WebConfig` (`--web.config.file`) the server speaks TLS, asks every request for basic
auth and adds the configured headers to every answer: all in the shared handler, before any
route runs, so a route added later is covered without a line of its own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dockpulse.basic_auth import BasicAuth
from dockpulse.web_config import WebConfig

log = logging.getLogger("dockpulse.http_server")


class BoundedHTTPServer(ThreadingHTTPServer):
    """Threads per connection, at most `max_connections` of them; request deadlines enforced."""

    daemon_threads = True
    request_queue_size = 128  # many scrapers or Alertmanager replicas may connect at once

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[DeadlineHandler],
        max_connections: int,
        read_timeout: float,
        busy_reply: bytes = b"",
        reap_every: float = 0.25,
        web_config: WebConfig | None = None,
    ) -> None:
        super().__init__(address, handler)
        self.read_timeout = read_timeout
        web_config = web_config or WebConfig()
        self.tls = web_config.tls
        self.auth = BasicAuth(web_config.users) if web_config.users else None
        self.extra_headers = web_config.headers
        self.busy_reply = b"" if self.tls else busy_reply  # never plain text into a TLS stream
        self.refused_total = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._reap_every = reap_every
        threading.Thread(target=self._reap, name="http-deadlines", daemon=True).start()

    def watch(self, connection: socket.socket) -> None:
        """The request on `connection` must be in within `read_timeout` from now."""
        with self._lock:
            self._deadlines[connection] = time.monotonic() + self.read_timeout

    def done(self, connection: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(connection, None)

    def get_request(self) -> tuple[socket.socket, Any]:
        """The accepted connection, TLS-wrapped; its handshake runs in its own thread."""
        connection, address = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_total += 1
            if self.busy_reply:
                with suppress(OSError):
                    request.settimeout(1.0)
                    request.sendall(self.busy_reply)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away: nothing to print a stack trace about."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def _reap(self) -> None:
        while True:
            time.sleep(self._reap_every)
            now = time.monotonic()
            with self._lock:
                expired = [c for c, deadline in self._deadlines.items() if deadline <= now]
                for connection in expired:
                    del self._deadlines[connection]
            for connection in expired:
                with suppress(OSError):  # unblocks the handler's read (TLS too); it then ends
                    socket.socket.shutdown(connection, socket.SHUT_RDWR)


class DeadlineHandler(BaseHTTPRequestHandler):
    """A handler whose every request (keep-alive ones too) runs against the server's deadline;
    call `request_read()` once the request, body included, is in."""

    server: BoundedHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # no single read waits longer
        super().setup()
        if self.server.tls is not None:  # the handshake is due within the deadline too
            self.server.watch(self.connection)
            try:
                self.connection.do_handshake()
            finally:
                self.server.done(self.connection)

    def parse_request(self) -> bool:
        """The request line and headers, then the web config's basic auth: a request without
        the right credentials gets 401 whatever its path or method."""
        if not super().parse_request():
            return False
        auth = self.server.auth
        if auth is None or auth.check(self.headers.get("Authorization")):
            return True
        self.request_read()
        self.close_connection = True  # its body, if any, is not read
        body = b"Unauthorized\n"
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Basic")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return False

    def end_headers(self) -> None:
        for name, value in self.server.extra_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def handle_one_request(self) -> None:
        self.server.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.done(self.connection)

    def request_read(self) -> None:
        """The whole request is in: from here on the server's own work takes its time."""
        self.server.done(self.connection)
