"""HTTP: `POST /webhook` (Alertmanager), `POST /heartbeat` (the Watchdog), `GET /healthz`,
`GET /metrics`.

A thread per connection (keep-alive), the stdlib server: a webhook is a small JSON body and one
SQLite commit, so the HTTP layer is the cost that matters and this one is the lightest. A slow
or idle client cannot hold the server: each request must arrive whole within `read_timeout`
(a reaper thread cuts connections past their deadline), and at most `max_connections` are
served at once (more are answered 503 and closed): the shared `BoundedHTTPServer`.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dockpulse.http_server import BoundedHTTPServer, DeadlineHandler
from dockpulse.web_config import WebConfig
from dockpulse_relay.intake.alert_log import AlertLog
from dockpulse_relay.intake.payload import PayloadError, evaluated_at, parse_notification
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.store.base import Store, StoreError

log = logging.getLogger("dockpulse_relay.http")


class Webhook:
    """What a notification goes through: check, store durably, log, wake the dispatcher."""

    def __init__(
        self,
        store: Store,
        alert_log: AlertLog,
        metrics: RelayMetrics,
        wake: Callable[[], None],
        auth_token: str | None,
        max_body_bytes: int,
    ) -> None:
        self.store = store
        self.alert_log = alert_log
        self.metrics = metrics
        self.wake = wake
        self.expected_auth = f"Bearer {auth_token}".encode() if auth_token else None
        self.max_body_bytes = max_body_bytes

    def authorized(self, header: str | None) -> bool:
        if self.expected_auth is None:
            return True
        return hmac.compare_digest((header or "").encode(), self.expected_auth)

    def receive(self, body: bytes) -> tuple[int, dict[str, object]]:
        """HTTP status and JSON reply for a webhook body."""
        try:
            alerts = parse_notification(body)
        except PayloadError as exc:
            return 400, {"error": str(exc)}
        try:
            fresh = self.store.record(alerts, time.time())
        except StoreError as exc:
            log.error("cannot store notification: %s", exc)
            return 503, {"error": "alert store unavailable; retry later"}
        new = sum(fresh)
        for alert in alerts:
            self.metrics.received.labels(alert.status).inc()
        self.metrics.queued.inc(new)
        self.metrics.deduplicated.inc(len(alerts) - new)
        try:
            self.alert_log.append(alerts, fresh)
        except (OSError, ValueError) as exc:
            self.metrics.alert_log_errors.inc()
            log.warning("cannot write the alert log: %s", exc)
        if any(alert.critical for alert, is_new in zip(alerts, fresh, strict=True) if is_new):
            self.wake()
        return 200, {"status": "stored", "alerts": len(alerts), "duplicates": len(alerts) - new}

    def heartbeat(self, body: bytes) -> tuple[int, dict[str, object]]:
        """The Watchdog's notification: only its arrival (and Prometheus' clock) matter."""
        try:
            alerts = parse_notification(body)
        except PayloadError as exc:
            return 400, {"error": str(exc)}
        firing = [alert for alert in alerts if alert.status == "firing"]
        if not firing:  # Alertmanager resolved the Watchdog: Prometheus stopped sending it
            return 200, {"status": "ignored: no firing heartbeat"}
        try:
            self.store.record_heartbeat(time.time(), evaluated_at(firing))
        except StoreError as exc:
            log.error("cannot store the heartbeat: %s", exc)
            return 503, {"error": "alert store unavailable; retry later"}
        return 200, {"status": "heartbeat"}


BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 35\r\n\r\n"
    b'{"error": "too many connections"}\r\n'
)


def make_server(
    host: str,
    port: int,
    webhook: Webhook,
    metrics: RelayMetrics,
    store: Store,
    max_connections: int = 64,
    read_timeout: float = 10.0,
    web_config: WebConfig | None = None,
) -> BoundedHTTPServer:
    class Handler(DeadlineHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: Alertmanager reuses connections
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024  # headers and body leave in one send, flushed per request

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in ("/webhook", "/heartbeat"):
                self._discard_body()
                self.request_read()
                self._json(404, {"error": "not found"})
                return
            code, reply = self._webhook(webhook.heartbeat if path == "/heartbeat" else None)
            metrics.requests.labels(str(code)).inc()
            self._json(code, reply)

        def _webhook(
            self, receive: Callable[[bytes], tuple[int, dict[str, object]]] | None = None
        ) -> tuple[int, dict[str, object]]:
            if not webhook.authorized(self.headers.get("Authorization")):
                self.request_read()
                self.close_connection = True
                return 401, {"error": "missing or wrong bearer token"}
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                return 411, {"error": "Content-Length required"}
            if int(length) > webhook.max_body_bytes:
                self.close_connection = True
                return 413, {"error": f"body larger than {webhook.max_body_bytes} bytes"}
            body = self.rfile.read(int(length))
            self.request_read()
            if len(body) < int(length):
                self.close_connection = True
                return 400, {"error": "body shorter than Content-Length"}
            return (receive or webhook.receive)(body)

        def do_GET(self) -> None:
            self.request_read()
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                try:
                    store.check()
                except StoreError as exc:
                    self._json(503, {"status": "store unavailable", "error": str(exc)})
                else:
                    self._json(200, {"status": "ok"})
            else:
                self._json(404, {"error": "not found"})

        def _discard_body(self) -> None:
            length = self.headers.get("Content-Length", "")
            if length.isdigit() and int(length) <= webhook.max_body_bytes:
                self.rfile.read(int(length))
            else:
                self.close_connection = True

        def _json(self, status: int, reply: dict[str, object]) -> None:
            self._reply(status, json.dumps(reply).encode() + b"\n", "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="dockpulse-relay"')
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # one line per webhook would drown the log; metrics count them

    return BoundedHTTPServer(
        (host, port), Handler, max_connections, read_timeout, BUSY_REPLY, web_config=web_config
    )
