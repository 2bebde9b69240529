"""Fixtures for the alerting tests: the real Prometheus, Alertmanager and relay on loopback.

Each service runs from a test copy of the repository's config (free ports, temp dirs, short
intervals); everything else in the copy is the real file, so the tests exercise it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"


def binary(*names: str) -> str:
    """Path of the first of `names` on PATH (Debian calls Alertmanager prometheus-alertmanager)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"none of {names} is installed (apt-get install prometheus ...)")


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool/amtool; stdout and stderr together, as a user sees them."""
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Service:
    """A server process on 127.0.0.1:port, logging to a file in its work dir."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            return requests.get(self.url + path, timeout=2).status_code == 200

        wait_until(ready, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start a server process; all are stopped at the end of the test."""
    started: list[Service] = []

    def start(
        name: str, args: list[str], port: int, ready_path: str, env: dict[str, str] | None = None
    ) -> Service:
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            args,
            cwd=tmp_path,
            env={**os.environ, **(env or {})},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        service = Service(name, port, process, log)
        started.append(service)
        service.wait_ready(ready_path)
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def relay_token(tmp_path: Path) -> tuple[str, Path]:
    """A fresh bearer token and the file Alertmanager reads it from."""
    token = secrets.token_urlsafe(24)
    path = tmp_path / "relay_token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token, path


@pytest.fixture
def start_relay(
    start_service: Callable[..., Service], tmp_path: Path, relay_token: tuple[str, Path]
) -> Callable[..., Service]:
    """`dockpulse-relay` with the outbox backend (mails as .eml files in tmp/outbox)."""

    def start(**env: str) -> Service:
        port = free_port()
        settings = {
            "RELAY_AUTH_TOKEN": relay_token[0],
            "RELAY_STORE": str(tmp_path / "relay.db"),
            "MAIL_BACKEND": "outbox",
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            "ALERT_LOG": str(tmp_path / "container_alerts.log"),
            "BUFFER_TIMEOUT": "1",
            "CHECK_INTERVAL": "0.2",
            "ALERT_COOLDOWN": "1",
            **env,
        }
        address = f"--web.listen-address=127.0.0.1:{port}"
        args = [sys.executable, "-m", "dockpulse_relay.cli", address]
        return start_service("relay", args, port, "/healthz", settings)

    return start


def alertmanager_config(relay_url: str, token_file: Path) -> dict[str, Any]:
    """The repository's alertmanager.yml, posting to `relay_url` with the token in `token_file`."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{relay_url}/webhook"
            webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


@pytest.fixture
def start_alertmanager(
    start_service: Callable[..., Service], tmp_path: Path, relay_token: tuple[str, Path]
) -> Callable[..., Service]:
    """The real Alertmanager (clustering off) from the repository's config."""

    def start(relay_url: str) -> Service:
        port = free_port()
        config_file = tmp_path / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(alertmanager_config(relay_url, relay_token[1])))
        args = [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config_file}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        return start_service("alertmanager", args, port, "/-/ready")

    return start


def prometheus_config(
    exporter_port: int, alertmanager_port: int, keep_containers: str
) -> dict[str, Any]:
    """The repository's prometheus.yml, cut to the exporter job, with 1 s intervals.

    Only the containers whose name matches `keep_containers` are kept: the test engine is
    shared, and other tests' stopped containers would raise alerts of their own.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / path) for path in config["rule_files"]]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{alertmanager_port}"
    ]
    exporter = next(job for job in config["scrape_configs"] if job["job_name"] == "exporter")
    exporter.update(scrape_interval="1s", scrape_timeout="1s")
    exporter["static_configs"][0]["targets"] = [f"127.0.0.1:{exporter_port}"]
    exporter["metric_relabel_configs"] = [
        {"source_labels": ["name"], "regex": f"|{keep_containers}", "action": "keep"}
    ]
    config["scrape_configs"] = [exporter]
    return config


@pytest.fixture
def start_prometheus(
    start_service: Callable[..., Service], tmp_path: Path
) -> Callable[..., Service]:
    """The real Prometheus with the repository's rules, from `prometheus_config`."""

    def start(exporter_port: int, alertmanager_port: int, keep_containers: str) -> Service:
        port = free_port()
        config_file = tmp_path / "prometheus.yml"
        config = prometheus_config(exporter_port, alertmanager_port, keep_containers)
        config_file.write_text(yaml.safe_dump(config))
        args = [
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        return start_service("prometheus", args, port, "/-/ready")

    return start


@pytest.fixture
def start_exporter(start_service: Callable[..., Service], tmp_path: Path) -> Callable[..., Service]:
    """`dockpulse-exporter` against the test engine (DOCKER_HOST), refreshing every 300 ms."""

    def start() -> Service:
        port = free_port()
        config_file = tmp_path / "exporter.yml"
        config_file.write_text(yaml.safe_dump({"refresh_interval": "300ms"}))
        args = [
            sys.executable,
            "-m",
            "dockpulse_exporter.cli",
            f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        return start_service("exporter", args, port, "/metrics")

    return start
