"""HTTP probes against a real local server that answers fast, slowly, wrongly, or not at all."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockpulse_exporter.config import Probe
from dockpulse_exporter.probes import ProbeResult, ProbeRunner
from testkit.helpers import free_port, value, values, wait_until


class TargetHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.6)
        status = 500 if self.path == "/wrong" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def target_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), TargetHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_probes_report_success_status_and_latency(start_exporter, target_server) -> None:
    down = f"http://127.0.0.1:{free_port()}/health"
    probe = {"interval": "500ms", "timeout": "400ms"}
    exporter = start_exporter(
        probes=[
            {"name": "ok", "url": f"{target_server}/ok", **probe, "slow_threshold": "1s"},
            {"name": "slow", "url": f"{target_server}/slow", "interval": "1s", "timeout": "1s"},
            {"name": "wrong", "url": f"{target_server}/wrong", **probe},
            {"name": "down", "url": down, **probe},
        ]
    )

    def all_probed():
        samples = exporter.scrape()
        runs = values(samples, "dockpulse_probe_latency_seconds_count")
        return samples if len(runs) == 4 and min(runs) >= 2 else None

    samples = wait_until(all_probed, timeout=15)
    assert value(samples, "probe_success", probe="ok") == 1
    assert value(samples, "probe_http_status_code", probe="ok") == 200
    assert value(samples, "probe_success", probe="slow") == 1
    assert value(samples, "probe_duration_seconds", probe="slow") >= 0.6
    assert value(samples, "probe_success", probe="wrong") == 0
    assert value(samples, "probe_http_status_code", probe="wrong") == 500
    assert value(samples, "probe_success", probe="down") == 0
    assert value(samples, "probe_http_status_code", probe="down") == 0
    assert value(samples, "dockpulse_probe_slow_threshold_seconds", probe="ok") == 1
    # The histogram puts the slow probe above 0.5 s and the fast one below it.
    assert value(samples, "dockpulse_probe_latency_seconds_bucket", probe="slow", le="0.5") == 0
    fast = value(samples, "dockpulse_probe_latency_seconds_bucket", probe="ok", le="0.5")
    count = value(samples, "dockpulse_probe_latency_seconds_count", probe="ok")
    assert fast == count
    assert value(samples, "probe_success", target=f"{target_server}/ok") == 1


def test_a_slow_target_never_delays_a_scrape(start_exporter, target_server) -> None:
    exporter = start_exporter(
        probes=[{"name": "slow", "url": f"{target_server}/slow", "interval": "1s", "timeout": "1s"}]
    )
    for _ in range(5):
        started = time.perf_counter()
        exporter.scrape()
        assert time.perf_counter() - started < 0.5


class KeepAliveHandler(TargetHandler):
    """HTTP/1.1 with Content-Length: the client may keep the connection for its next request."""

    protocol_version = "HTTP/1.1"


class ListenerThatStopsAccepting:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 whose listening socket can be closed while the
    connections it already accepted are still served (a dead listener, a draining process)."""

    def __init__(self, after_first_request: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/ok"
        self.after_first_request = after_first_request
        self.accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self.accepting.start()

    def stop_accepting(self) -> None:
        """Close the listener: from now on, connecting is refused."""
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self.listener.close()

    def _accept_loop(self) -> None:
        with suppress(OSError):  # the listener was closed
            while True:
                connection, address = self.listener.accept()
                threading.Thread(
                    target=self._serve, args=(connection, address), daemon=True
                ).start()

    def _serve(self, connection: socket.socket, address: tuple[str, int]) -> None:
        server = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                super().do_GET()
                if server.after_first_request:
                    server.stop_accepting()

        with connection:
            Handler(connection, address, None)  # serves until the client hangs up


@pytest.fixture
def stops_accepting_after_first_request() -> Iterator[str]:
    server = ListenerThatStopsAccepting(after_first_request=True)
    yield server.url
    server.stop_accepting()


def test_every_probe_run_opens_a_new_connection(stops_accepting_after_first_request) -> None:
    """Like blackbox_exporter, a run never reuses a kept-alive connection: once the server stops
    accepting, the next run fails with status 0 although the old connection would still answer."""
    probe = Probe(
        name="draining", url=stops_accepting_after_first_request, interval=0.2, timeout=0.2
    )
    outcomes: list[ProbeResult] = []
    runner = ProbeRunner(
        [probe], on_result=lambda: outcomes.extend(runner.results()), publish_interval=0
    )
    runner.start()
    try:
        wait_until(lambda: len(outcomes) >= 2, timeout=5, interval=0.05)
    finally:
        runner.stop()
    first, second = outcomes[:2]
    assert (first.success, first.status_code) == (True, 200)
    assert (second.success, second.status_code) == (False, 0)
