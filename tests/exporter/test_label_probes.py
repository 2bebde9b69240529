"""Probes from Docker labels, and the bounded pool that runs every probe.

The label rules are checked on Container values (pure logic, milliseconds); the wiring with a
real dockerd container and a real HTTP server on 127.0.0.1; the pool with real local servers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockpulse_exporter.config import Probe
from dockpulse_exporter.label_probes import LabelProbes
from dockpulse_exporter.model import Container
from dockpulse_exporter.probes import ProbeRunner, ProbeTarget
from testkit.helpers import value, values, wait_until


def container(name: str, labels: dict[str, str], **fields: object) -> Container:
    settings: dict[str, object] = {
        "id": f"id-{name}",
        "name": name,
        "image": "busybox",
        "labels": labels,
        "state": "running",
        "pid": 1,
        "exit_code": 0,
        "oom_killed": False,
        "restart_count": 0,
        "health": "none",
        "started_at": 0.0,
        "network_mode": "host",
        "cgroup_parent": "",
        "memory_limit_bytes": 0,
        "cpu_quota_us": 0,
        "cpu_period_us": 0,
        **fields,
    }
    return Container(**settings)  # type: ignore[arg-type]


def urls(targets: list[ProbeTarget]) -> dict[str, str]:
    return {t.probe.name: str(t.probe.url) for t in targets}


def test_a_port_label_resolves_to_an_address_the_exporter_reaches() -> None:
    owner = container("net", {}, network_mode="bridge", address="172.17.0.5")
    found = LabelProbes().targets(
        [
            container("web", {"dockpulse.probe.port": "8000", "dockpulse.probe.path": "health"}),
            container(
                "api", {"dockpulse.probe.port": "81"}, network_mode="bridge", address="10.1.2.3"
            ),
            container(
                "db",
                {"dockpulse.probe.port": "5432", "dockpulse.probe.scheme": "tcp"},
                network_mode="container:id-net",
            ),
            container(
                "tls",
                {
                    "dockpulse.probe.url": "https://127.0.0.1:8443/",
                    "dockpulse.probe.name": "front",
                    "dockpulse.probe.interval": "10s",
                    "dockpulse.probe.expected_status": "200, 204",
                },
            ),
            owner,
        ],
        taken=set(),
    )
    assert urls(found) == {
        "web": "http://127.0.0.1:8000/health",
        "api": "http://10.1.2.3:81/",
        "db": "tcp://172.17.0.5:5432",
        "front": "https://127.0.0.1:8443/",
    }
    front = next(t for t in found if t.probe.name == "front")
    assert (front.container, front.probe.interval, front.probe.expected_status) == (
        "tls",
        10,
        [200, 204],
    )


def test_bad_labels_are_logged_once_naming_container_and_label(caplog) -> None:
    containers = [
        container("bad-port", {"dockpulse.probe.port": "http"}),
        container("bad-timeout", {"dockpulse.probe.port": "80", "dockpulse.probe.timeout": "soon"}),
        container("isolated", {"dockpulse.probe.port": "80"}, network_mode="none"),
        container("clash", {"dockpulse.probe.port": "80", "dockpulse.probe.name": "webapp"}),
        container("good", {"dockpulse.probe.port": "8080"}),
    ]
    label_probes = LabelProbes()
    with caplog.at_level(logging.WARNING, logger="dockpulse_exporter.label_probes"):
        assert urls(label_probes.targets(containers, taken={"webapp"})) == {
            "good": "http://127.0.0.1:8080/"
        }
        label_probes.targets(containers, taken={"webapp"})  # nothing new: nothing logged
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4, messages
    assert (
        "container bad-port: label dockpulse.probe.port='http' is not a port number" in messages[0]
    )
    assert "container bad-timeout: label dockpulse.probe.timeout='soon'" in messages[1]
    assert "container clash: label dockpulse.probe.name='webapp' another probe" in messages[2]
    assert "container isolated: label dockpulse.probe.port='80' no address" in messages[3]


def test_a_stopped_container_keeps_its_probe_until_it_is_removed() -> None:
    label_probes = LabelProbes()
    labels = {"dockpulse.probe.port": "81"}
    running = container("api", labels, network_mode="bridge", address="10.1.2.3")
    assert urls(label_probes.targets([running], set())) == {"api": "http://10.1.2.3:81/"}
    stopped = container("api", labels, network_mode="bridge", address="", state="exited")
    assert urls(label_probes.targets([stopped], set())) == {"api": "http://10.1.2.3:81/"}
    assert label_probes.targets([], set()) == []
    never_started = container("new", labels, network_mode="host", state="created")
    assert label_probes.targets([never_started], set()) == []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A listener that never accepts: connecting works (the kernel's backlog), no answer."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield listener.getsockname()[1]
    listener.close()


def test_hanging_targets_do_not_hold_back_the_others(server: int, hanging_port: int) -> None:
    hanging = [
        Probe(name=f"hang-{i}", url=f"http://127.0.0.1:{hanging_port}/", interval=1, timeout=1)
        for i in range(2)
    ]
    fast = [
        Probe(name=f"fast-{i}", url=f"http://127.0.0.1:{server}/health", interval=0.2, timeout=0.2)
        for i in range(20)
    ]
    runner = ProbeRunner(hanging + fast, workers=4, publish_interval=0)
    runner.start()
    try:
        time.sleep(1.1)  # the behaviour under test is a schedule over time
        results = {r.probe.name: r for r in runner.results()}
        threads = [t for t in threading.enumerate() if t.name.startswith("probe")]
    finally:
        runner.stop()
    assert len(threads) <= 4 + 1  # the pool and the scheduler, however many probes
    assert all(results[f"hang-{i}"].last.failure == "timeout" for i in range(2))
    runs = [results[f"fast-{i}"].runs for i in range(20)]
    assert min(runs) >= 4, runs  # every 0.2 s for 1.1 s, although 2 of 4 workers hang
    assert all(results[f"fast-{i}"].success for i in range(20))


def test_label_probes_come_and_go_and_the_file_wins(server: int) -> None:
    url = f"http://127.0.0.1:{server}/health"
    runner = ProbeRunner(
        [Probe(name="web", url=url, interval=0.2, timeout=0.2)], publish_interval=0
    )
    runner.start()
    try:
        label = ProbeTarget(
            Probe(name="c1", url=url.replace("health", "x"), interval=0.2, timeout=0.2), "c1"
        )
        clash = ProbeTarget(Probe(name="web", url=url + "?label", interval=0.2, timeout=0.2), "c2")
        runner.set_label_probes([label, clash])

        def both_probed() -> set[tuple[str, str | None, int]] | None:
            seen = {(r.probe.name, r.container, r.status_code) for r in runner.results()}
            return seen if len(seen) == 2 else None

        found = wait_until(both_probed, timeout=5, interval=0.05)
        assert found == {("web", None, 200), ("c1", "c1", 503)}
        runner.set_label_probes([])
        assert {r.probe.name for r in runner.results()} == {"web"}
    finally:
        runner.stop()


def test_a_labelled_container_is_probed_under_its_name_until_removed(
    start_exporter, run_container, server: int
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(start_exporter)  # meanwhile, the containers start
        web = run_container(
            "sleep 600",
            network_mode="host",
            labels={"dockpulse.probe.port": str(server), "dockpulse.probe.path": "/health"},
        )
        bad = run_container("sleep 600", labels={"dockpulse.probe.port": "eighty"})
        exporter = starting.result()
    target = f"http://127.0.0.1:{server}/health"

    def probed():
        samples = exporter.scrape()
        ok = value(samples, "probe_success", name=web.name, probe=web.name, target=target) == 1
        return samples if ok and value(samples, "container_up", name=bad.name) == 1 else None

    samples = wait_until(probed, timeout=15)
    assert value(samples, "probe_http_status_code", name=web.name) == 200
    assert values(samples, "probe_success", name=bad.name) == []
    web.remove(force=True)
    wait_until(lambda: not values(exporter.scrape(), "probe_success", name=web.name), timeout=10)
    log = exporter.service.log.read_text()
    assert log.count(f"container {bad.name}: label dockpulse.probe.port='eighty'") == 1, log
