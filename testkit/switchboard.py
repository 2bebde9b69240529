"""Alertmanager clusters on loopback, for the cluster test and bench/alertmanager_failover.py.

A tiny local HTTP server, the switchboard, serves switches as metrics for Prometheus to scrape
(the rule in SWITCH_RULES fires when a switch is turned on), and takes Alertmanager's webhook
notifications, recording who sent each one and when."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
import yaml

from testkit.helpers import free_port, wait_until
from testkit.local_stack import TEST_INTERVAL, LocalStack, Service, prometheus_config

SWITCH_RULES = {
    "groups": [
        {
            "name": "switchboard",
            "rules": [
                {
                    "alert": "SwitchOn",
                    "expr": "scale_test_switch == 1",
                    "labels": {"severity": "critical"},  # the shipped route: notified at once
                    "annotations": {"summary": "Switch {{ $labels.case }} is on"},
                }
            ],
        }
    ]
}


@dataclass
class Notification:
    received_at: float  # time.monotonic()
    sender: str  # the notifying Alertmanager's externalURL
    status: str
    cases: list[str]  # the `case` label of each alert in it
    authorization: str


@dataclass
class Switchboard:
    port: int = 0
    switched_on: set[str] = field(default_factory=set)
    notifications: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def switch_on(self, *cases: str) -> None:
        with self.lock:
            self.switched_on.update(cases)

    def metrics(self) -> bytes:
        with self.lock:
            lines = [f'scale_test_switch{{case="{case}"}} 1\n' for case in sorted(self.switched_on)]
        return ("# TYPE scale_test_switch gauge\n" + "".join(lines)).encode()

    def record(self, payload: dict[str, Any], authorization: str) -> None:
        notification = Notification(
            time.monotonic(),
            payload["externalURL"],
            payload["status"],
            [alert["labels"].get("case", "") for alert in payload["alerts"]],
            authorization,
        )
        with self.lock:
            self.notifications.append(notification)

    def firing(self, case: str) -> list[Notification]:
        """The notifications that carried alert `case` firing."""
        with self.lock:
            return [n for n in self.notifications if n.status == "firing" and case in n.cases]


@contextmanager
def switchboard() -> Iterator[Switchboard]:
    board = Switchboard()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = board.metrics()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            board.record(json.loads(self.rfile.read(length)), self.headers["Authorization"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    board.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield board
    finally:
        server.shutdown()
        server.server_close()


def cluster_peers(alertmanager: Service) -> int:
    """Members an Alertmanager sees in its cluster once it is ready (0 before)."""
    status = requests.get(f"{alertmanager.url}/api/v2/status", timeout=5).json()["cluster"]
    return len(status.get("peers") or []) if status["status"] == "ready" else 0


def alertmanager_cluster(
    stack: LocalStack,
    receiver_url: str | Sequence[str],
    size: int = 2,
    flags: tuple[str, ...] = (),
    wait: bool = True,
    **caps: str,
) -> list[Service]:
    """`size` real Alertmanagers with the shipped config, each a peer of all others on
    127.0.0.1, notifying `receiver_url`; returned once every one sees them all (`wait`; else
    at once, see `wait_for_cluster`). `caps` shorten the routes' waits (alertmanager_config)."""
    cluster_ports = [free_port() for _ in range(size)]
    peers = [
        stack.alertmanager(
            receiver_url,
            name=f"alertmanager-{number + 1}",
            cluster_port=port,
            peers=[other for other in cluster_ports if other != port],
            flags=flags,
            **caps,
        )
        for number, port in enumerate(cluster_ports)
    ]
    if wait:
        wait_for_cluster(peers)
    return peers


def wait_for_cluster(peers: list[Service]) -> None:
    """Until every peer is ready (its gossip settled, seconds after it starts) and sees all."""
    wait_until(lambda: all(cluster_peers(peer) == len(peers) for peer in peers), timeout=60)


def switch_prometheus(
    stack: LocalStack,
    board: Switchboard,
    alertmanagers: list[Service],
    interval: str = TEST_INTERVAL,
) -> Service:
    """Prometheus scraping the switchboard and sending SWITCH_RULES' alerts to every peer."""
    rules = stack.work_dir / "switch-rules.yml"
    rules.write_text(yaml.safe_dump(SWITCH_RULES))
    ports = [alertmanager.port for alertmanager in alertmanagers]
    config = prometheus_config(board.port, ports, ".*", [str(rules)], interval)
    return stack.prometheus(config)
