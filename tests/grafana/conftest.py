"""Fixtures for the dashboard tests: a real Prometheus, and a live stack feeding it.

The live stack is what the dashboards watch in production, minus Grafana (which cannot run
here): real containers (one burning CPU under limits with a health check, one stopped), the real
`dockpulse-exporter` probing the real demo webapp (on a throwaway PostgreSQL), the real Locust
load profile `normal` driving it and serving its metrics, and the Debian `prometheus` binary
scraping them all every second, with an always-firing rule so the alert panels have data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass
from typing import Any

import docker
import pytest
import requests
import yaml

from dockpulse_stack.engine import Engine
from testkit.cadvisor_queries import VETH_TRAFFIC
from testkit.helpers import free_port, wait_until
from testkit.local_stack import LocalStack, stop_process
from testkit.postgres import PostgresServer
from tests.loadtest.conftest import LocustRun, start_locust
from tests.webapp.process import webapp_process

TEST_RULES = {
    "groups": [
        {
            "name": "dashboard-test",
            "rules": [
                {
                    "alert": "DashboardTestAlwaysFiring",
                    "expr": "vector(1)",
                    "labels": {"severity": "info"},
                    "annotations": {"summary": "Fires so the alert panels have data."},
                }
            ],
        }
    ]
}


@dataclass
class Prometheus:
    """The `prometheus` binary on a free port, scraping the stack's (future) ports."""

    url: str
    ports: dict[str, int]  # scrape job -> port on 127.0.0.1

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        data = {"query": expr, **({"time": at} if at is not None else {})}
        return requests.post(f"{self.url}/api/v1/query", data=data, timeout=10).json()

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> dict[str, Any]:
        data = {"query": expr, "start": start, "end": end, "step": step}
        return requests.post(f"{self.url}/api/v1/query_range", data=data, timeout=10).json()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("grafana-prometheus")
    ports = {job: free_port() for job in ("exporter", "webapp", "loadtest")}
    (workdir / "rules.yml").write_text(yaml.safe_dump(TEST_RULES))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
            for job, target in ports.items()
        ],
    }
    with LocalStack(workdir) as local:
        yield Prometheus(local.prometheus(config).url, ports)


@dataclass
class LiveStack:
    prometheus: Prometheus
    instance: str  # the exporter's `instance` label
    burning: str  # a running container: CPU loop, CPU and memory limits, health check
    stopped: str  # a container that exited with code 3
    started_at: float


@pytest.fixture(scope="session")
def live_stack(
    engine: Engine, busybox: str, prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    workdir = tmp_path_factory.mktemp("grafana-stack")
    suffix = uuid.uuid4().hex[:8]
    burning, stopped = f"grafana-test-burn-{suffix}", f"grafana-test-stopped-{suffix}"
    webapp_url = f"http://127.0.0.1:{prometheus.ports['webapp']}"
    with ExitStack() as stack, closing(engine.client()) as client:
        for name in (burning, stopped):
            stack.callback(remove_container, client, name)
        client.containers.run(
            busybox,
            ["sh", "-c", f"{VETH_TRAFFIC} while :; do :; done"],
            name=burning,
            detach=True,
            network_mode="none",
            cap_add=["NET_ADMIN"],
            nano_cpus=500_000_000,
            mem_limit="64m",
            healthcheck={"test": ["CMD-SHELL", "true"], "interval": 1_000_000_000},
            labels={"dockpulse.test": "grafana"},
        )
        client.containers.run(
            busybox, ["sh", "-c", "exit 3"], name=stopped, detach=True, network_mode="none"
        ).wait(timeout=20)
        database = stack.enter_context(PostgresServer())
        stack.enter_context(
            webapp_process(database.url(), port=prometheus.ports["webapp"], workers="1")
        )
        exporter_config = {
            "refresh_interval": "1s",
            "probes": [
                {"name": "webapp", "url": f"{webapp_url}/health", "interval": "1s", "timeout": "1s"}
            ],
        }
        local = stack.enter_context(LocalStack(workdir))
        local.exporter(exporter_config, port=prometheus.ports["exporter"], docker_host=engine.host)
        locust = start_locust(
            "normal", webapp_url, workdir, "5m", metrics_port=prometheus.ports["loadtest"]
        )
        stack.enter_context(locust.process)  # closes its output pipe once stopped
        stack.callback(stop_process, locust.process, 15)
        wait_until(lambda: answers(locust), timeout=30)
        yield LiveStack(
            prometheus, f"127.0.0.1:{prometheus.ports['exporter']}", burning, stopped, time.time()
        )


def remove_container(client: docker.DockerClient, name: str) -> None:
    with suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)


def answers(locust: LocustRun) -> bool:
    """Whether Locust's metrics answer; fail at once, with its output, if it exited."""
    if locust.process.poll() is not None:
        assert locust.process.stdout is not None
        pytest.fail(f"locust exited:\n{locust.process.stdout.read()[-2000:]}")
    return requests.get(locust.metrics_url, timeout=2).ok
