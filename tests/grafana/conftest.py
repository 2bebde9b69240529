"""Fixtures for the dashboard tests: a real Prometheus, and a live stack feeding it.

The live stack is what the dashboards watch in production, minus Grafana (which cannot run
here): real containers (one burning CPU under limits with a health check, one stopped), the real
`dockpulse-exporter` probing the real demo webapp (on a throwaway PostgreSQL), the real Locust
load profile `normal` driving it and serving its metrics, and the Debian `prometheus` binary
scraping them all every second, with an always-firing rule so the alert panels have data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml

from dockpulse.engine import Engine
from dockpulse.postgres import PostgresServer
from tests.helpers import free_port, wait_until

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
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
    port = free_port()
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
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(workdir / "prometheus.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/-/ready", timeout=2).ok, timeout=20)
        yield Prometheus(url, ports)
    finally:
        process.terminate()
        process.wait(timeout=20)


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
            ["sh", "-c", "while :; do :; done"],
            name=burning,
            detach=True,
            network_mode="none",
            nano_cpus=500_000_000,
            mem_limit="64m",
            healthcheck={"test": ["CMD-SHELL", "true"], "interval": 1_000_000_000},
            labels={"dockpulse.test": "grafana"},
        )
        client.containers.run(
            busybox, ["sh", "-c", "exit 3"], name=stopped, detach=True, network_mode="none"
        ).wait(timeout=20)
        database = stack.enter_context(PostgresServer())
        webapp_env = {
            "DATABASE_URL": database.url(),
            "WEBAPP_LISTEN_ADDRESS": webapp_url.removeprefix("http://"),
            "WEBAPP_WORKERS": "1",
        }
        webapp = stack.enter_context(
            run(workdir, "webapp", ["-m", "dockpulse_webapp.cli"], webapp_env)
        )
        exporter_config = {
            "refresh_interval": "1s",
            "probes": [
                {"name": "webapp", "url": f"{webapp_url}/health", "interval": "1s", "timeout": "1s"}
            ],
        }
        (workdir / "exporter.yml").write_text(yaml.safe_dump(exporter_config))
        exporter_args = [
            "-m",
            "dockpulse_exporter.cli",
            f"--config.file={workdir / 'exporter.yml'}",
            f"--web.listen-address=127.0.0.1:{prometheus.ports['exporter']}",
        ]
        exporter = stack.enter_context(
            run(workdir, "exporter", exporter_args, {"DOCKER_HOST": engine.host})
        )
        answers(webapp, f"{webapp_url}/health")
        answers(exporter, f"http://127.0.0.1:{prometheus.ports['exporter']}/metrics")
        locust_args = ["-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", webapp_url]
        locust_env = {
            "STRESS_LEVEL": "normal",
            "LOADTEST_METRICS_PORT": str(prometheus.ports["loadtest"]),
        }
        locust = stack.enter_context(run(workdir, "locust", [*locust_args, "-t", "5m"], locust_env))
        answers(locust, f"http://127.0.0.1:{prometheus.ports['loadtest']}/metrics")
        yield LiveStack(
            prometheus, f"127.0.0.1:{prometheus.ports['exporter']}", burning, stopped, time.time()
        )


def remove_container(client: docker.DockerClient, name: str) -> None:
    with suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)


@dataclass
class Program:
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def run(workdir: Path, name: str, args: list[str], env: dict[str, str]) -> Iterator[Program]:
    """A Python program of the stack as a subprocess, logging to `workdir/<name>.log`."""
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield Program(process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(program: Program, url: str, timeout: float = 30) -> None:
    """Wait until `url` answers 200; fail at once, with its log, if the program exited."""

    def ready() -> bool:
        if program.process.poll() is not None:
            pytest.fail(f"{program.log.name} exited:\n{program.log.read_text()[-2000:]}")
        return requests.get(url, timeout=2).ok

    wait_until(ready, timeout=timeout)
