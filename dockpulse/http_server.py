"""An HTTP server that a slow or idle client cannot hold; the exporter and the relay serve with it.

A thread per connection and at most `max_connections` at once; past that a new connection gets
`busy_reply` (if any) and is closed rather than given a thread. Every request must arrive whole
within `read_timeout`: a total deadline, not per byte, so a client dribbling one byte at a time
is cut too. One reaper thread shuts down the connections past their deadline.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
    ) -> None:
        super().__init__(address, handler)
        self.read_timeout = read_timeout
        self.busy_reply = busy_reply
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
                with suppress(OSError):  # unblocks the handler's read; it then ends
                    connection.shutdown(socket.SHUT_RDWR)


class DeadlineHandler(BaseHTTPRequestHandler):
    """A handler whose every request (keep-alive ones too) runs against the server's deadline;
    call `request_read()` once the request, body included, is in."""

    server: BoundedHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # no single read waits longer
        super().setup()

    def handle_one_request(self) -> None:
        self.server.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.done(self.connection)

    def request_read(self) -> None:
        """The whole request is in: from here on the server's own work takes its time."""
        self.server.done(self.connection)
