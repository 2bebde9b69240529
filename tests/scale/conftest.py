"""Fixtures for the scaling tests: two Docker hosts on this machine, each a private dockerd of its
own with its own `dockpulse-exporter`, and one Prometheus finding both exporters in a file_sd
targets file, as prometheus/targets/exporters.yml lists a user's hosts; it alerts through the
real Alertmanager to the relay, which writes its mails to an outbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass

import docker
import pytest

from dockpulse_stack.engine import Engine, temporary_engine
from dockpulse_stack.rootfs import busybox_image
from tests.support.local_stack import (
    TEST_INTERVAL,
    TEST_RELAY_TIMINGS,
    LocalStack,
    Relay,
    Service,
    exporter_config,
    prometheus_config,
)

# Containers of the scaling tests only: every other container of the engines is dropped.
CONTAINERS = "scale-test-.*"


@dataclass
class Host:
    """A stand-in Docker host: its engine and its exporter (whose address is `instance`)."""

    engine: Engine
    exporter: Service
    busybox: str

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.exporter.port}"

    def run(self, name: str) -> docker.models.containers.Container:
        """A long-running busybox container called `name` on this host."""
        with closing(self.engine.client()) as client:
            return client.containers.run(
                self.busybox, ["sleep", "600"], name=name, detach=True, network_mode="none"
            )


@dataclass
class TwoHosts:
    hosts: tuple[Host, Host]
    prometheus: Service
    relay: Relay


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    """Two private engines with an exporter each, scraped by one Prometheus every second."""
    work_dir = tmp_path_factory.mktemp("two-hosts")
    with ExitStack() as stack:
        local = stack.enter_context(LocalStack(work_dir))
        hosts = []
        for number in (1, 2):
            engine = stack.enter_context(temporary_engine())
            exporter = local.exporter(
                exporter_config(None, refresh_interval="300ms"),
                name=f"exporter-{number}",
                docker_host=engine.host,
            )
            hosts.append(Host(engine, exporter, busybox_image(engine)))
        stack.callback(local.stop)  # the exporters stop before their engines
        relay = local.relay(**TEST_RELAY_TIMINGS)
        alertmanager = local.alertmanager(relay.url)
        config = prometheus_config(
            [host.exporter.port for host in hosts],
            [alertmanager.port],
            CONTAINERS,
            interval=TEST_INTERVAL,
            targets_file=work_dir / "targets" / "exporters.yml",
        )
        prometheus = local.prometheus(config)
        yield TwoHosts((hosts[0], hosts[1]), prometheus, relay)
