"""Fixtures for the exporter tests: the real exporter process and throwaway containers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from dockpulse.engine import Engine
from tests.helpers import Samples, free_port, scrape, wait_until

TEST_LABEL = "dockpulse.test"


@dataclass
class ExporterProcess:
    """`dockpulse-exporter` running as a subprocess on a free port."""

    config: dict[str, Any]
    workdir: Path
    docker_host: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> ExporterProcess:
        config_file = self.workdir / "exporter.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dockpulse_exporter.cli",
                f"--config.file={config_file}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            env={**os.environ, "DOCKER_HOST": self.docker_host},
            stdout=(self.workdir / "exporter.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: scrape(self.url), timeout=15)
        return self

    def scrape(self) -> Samples:
        return scrape(self.url)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def start_exporter(engine: Engine, tmp_path: Path) -> Iterator[Callable[..., ExporterProcess]]:
    started: list[ExporterProcess] = []

    def start(docker_host: str | None = None, **config: Any) -> ExporterProcess:
        settings = {"refresh_interval": "300ms", "resync_interval": "30s", **config}
        exporter = ExporterProcess(settings, tmp_path, docker_host or engine.host).start()
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


@pytest.fixture
def exporter(start_exporter: Callable[..., ExporterProcess]) -> ExporterProcess:
    return start_exporter()


@pytest.fixture
def run_container(engine: Engine, busybox: str) -> Iterator[Callable[..., Any]]:
    """Start a busybox container (network none) labelled for cleanup; returns the Container."""
    with closing(engine.client()) as client:
        marker = uuid.uuid4().hex[:8]

        def run(command: str, name: str | None = None, **options: Any) -> Any:
            labels = {TEST_LABEL: marker, **options.pop("labels", {})}
            return client.containers.run(
                busybox,
                ["sh", "-c", command],
                name=name or f"exporter-test-{uuid.uuid4().hex[:10]}",
                detach=True,
                network_mode="none",
                labels=labels,
                **options,
            )

        yield run
        for container in client.containers.list(
            all=True, filters={"label": f"{TEST_LABEL}={marker}"}
        ):
            with suppress(docker.errors.NotFound):
                container.remove(force=True)
