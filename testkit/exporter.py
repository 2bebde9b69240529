"""The real exporter's objects in this process, refreshed by hand: no threads, no serving."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

import docker

from dockpulse_exporter.cli import Exporter
from dockpulse_exporter.config import ExporterConfig
from testkit.helpers import free_port


@contextmanager
def exporter_in_process(docker_host: str) -> Iterator[Exporter]:
    """An Exporter with default settings whose watcher has listed the containers once (as at
    start-up); call `exporter.sampler.refresh()` for each refresh."""
    config = ExporterConfig(docker_host=docker_host, listen_address=f"127.0.0.1:{free_port()}")
    exporter = Exporter(config)
    try:
        with closing(docker.APIClient(base_url=docker_host)) as api:
            exporter.watcher.resync(api)
        yield exporter
    finally:
        exporter.sampler.stop()
        exporter.server.server_close()
