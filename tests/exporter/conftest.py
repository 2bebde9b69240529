"""Fixtures for the exporter tests: the real exporter process and throwaway containers."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from dockpulse_stack.engine import Engine
from testkit.helpers import Samples, scrape
from testkit.local_stack import LocalStack, Service

TEST_LABEL = "dockpulse.test"


@dataclass
class ExporterProcess:
    """`dockpulse-exporter` running as a subprocess on a free port (a LocalStack service)."""

    service: Service

    @property
    def url(self) -> str:
        return f"{self.service.url}/metrics"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.service.process

    def scrape(self) -> Samples:
        return scrape(self.url)


@pytest.fixture
def start_exporter(engine: Engine, tmp_path: Path) -> Iterator[Callable[..., ExporterProcess]]:
    """Start exporters with test timings and `config`; all are stopped at the end of the test."""
    with LocalStack(tmp_path) as stack:

        def start(docker_host: str | None = None, **config: Any) -> ExporterProcess:
            settings = {"refresh_interval": "300ms", "resync_interval": "30s", **config}
            name = f"exporter-{len(stack.services)}"
            return ExporterProcess(
                stack.exporter(settings, name, docker_host=docker_host or engine.host)
            )

        yield start


@pytest.fixture
def exporter(start_exporter: Callable[..., ExporterProcess]) -> ExporterProcess:
    return start_exporter()


@pytest.fixture
def run_container(engine: Engine, busybox: str) -> Iterator[Callable[..., Any]]:
    """Start a busybox container (network none unless `network_mode` is given) labelled for
    cleanup; returns the Container."""
    with closing(engine.client()) as client:
        marker = uuid.uuid4().hex[:8]

        def run(command: str, name: str | None = None, **options: Any) -> Any:
            labels = {TEST_LABEL: marker, **options.pop("labels", {})}
            return client.containers.run(
                busybox,
                ["sh", "-c", command],
                name=name or f"exporter-test-{uuid.uuid4().hex[:10]}",
                detach=True,
                labels=labels,
                **{"network_mode": "none", **options},
            )

        yield run
        for container in client.containers.list(
            all=True, filters={"label": f"{TEST_LABEL}={marker}"}
        ):
            with suppress(docker.errors.NotFound):
                container.remove(force=True)
