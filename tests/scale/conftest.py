"""The scaling proof's stack, on real components on loopback.

Two Docker hosts: the test engine and a private dockerd of its own (each with its own
`dockpulse-exporter`), one Prometheus finding both exporters in a file_sd targets file (as
prometheus/targets/exporters.yml lists a user's hosts) and sending to two Alertmanager peers,
each posting to two relay replicas on one PostgreSQL, which mail over SMTP to an aiosmtpd sink
that counts every copy (relay_replicas.py). The demo webapp runs as a container on the first
host, on a database of the same PostgreSQL server, loaded by a Locust master and 2 workers.

Test timings: 1 s scrapes and evaluations, the relay's test timings, Alertmanager's group waits
at most 1 s and its peer timeout 3 s (15 s shipped), ContainerHighCpu `for` 5 s and a CPU
threshold of 10 % on the webapp (as tests/e2e).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from dockpulse_stack.engine import Engine, temporary_engine
from dockpulse_stack.rootfs import busybox_image
from testkit.helpers import free_port
from testkit.local_stack import (
    TEST_INTERVAL,
    LocalStack,
    Service,
    copy_rules,
    exporter_config,
    prometheus_config,
)
from testkit.postgres import PostgresServer
from testkit.relay_process import RelayProcess
from testkit.relay_replicas import PacedMailbox, paced_smtp, relay_replicas
from testkit.switchboard import wait_for_cluster
from testkit.webapp_container import WebappContainer, webapp_image
from tests.e2e.conftest import TEST_ALERT_FOR, TEST_CPU_THRESHOLD_PERCENT
from tests.loadtest.conftest import LocustRun, start_locust, webapp_requests

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
class ScaleStack:
    hosts: tuple[Host, Host]
    prometheus: Service
    peers: list[Service]  # the Alertmanager cluster
    replicas: list[RelayProcess]  # on `relay_store`
    relay_store: str
    mailbox: PacedMailbox
    webapp: WebappContainer  # on the first host
    load: LocustRun  # on the webapp since before Prometheus started
    answered_before: Counter[str]  # what the webapp had answered before the load


@pytest.fixture(scope="module")
def scale_stack(
    engine: Engine, busybox: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScaleStack]:
    """The stack, with the webapp under a Locust master and 2 workers running the
    cpu-intensive profile from the start (Prometheus sees it loaded from its first scrape)."""
    work_dir: Path = tmp_path_factory.mktemp("scale")
    image = webapp_image(engine)
    with ExitStack() as cleanup:
        second_engine = cleanup.enter_context(temporary_engine())
        postgres = cleanup.enter_context(PostgresServer())
        mailbox, smtp = cleanup.enter_context(paced_smtp(work_dir))
        labels = {"dockpulse.cpu_threshold": str(TEST_CPU_THRESHOLD_PERCENT)}
        webapp = WebappContainer(
            engine, f"scale-test-webapp-{uuid.uuid4().hex[:8]}", postgres.create_database(), labels
        )
        cleanup.callback(webapp.remove)
        webapp.run(image)
        answered_before = webapp_requests(webapp.url)
        load = start_locust(
            "cpu-intensive", webapp.url, work_dir, "300s", workers=2, web_port=free_port()
        )
        cleanup.callback(load.quit)

        local = cleanup.enter_context(LocalStack(work_dir))
        relay_store = postgres.create_database()
        replicas, peers = relay_replicas(
            local, relay_store, smtp, wait=False, group_wait="1s", group_interval="1s"
        )
        hosts = []
        for number, (host_engine, host_busybox) in enumerate(
            [(engine, busybox), (second_engine, busybox_image(second_engine))], start=1
        ):
            exporter = local.exporter(
                exporter_config(None, refresh_interval="300ms"),
                name=f"exporter-{number}",
                docker_host=host_engine.host,
            )
            hosts.append(Host(host_engine, exporter, host_busybox))
        cleanup.callback(local.stop)  # the exporters stop before their engines
        config = prometheus_config(
            [host.exporter.port for host in hosts],
            [peer.port for peer in peers],
            CONTAINERS,
            copy_rules(work_dir / "rules", TEST_ALERT_FOR),
            interval=TEST_INTERVAL,
            targets_file=work_dir / "targets" / "exporters.yml",
        )
        prometheus = local.prometheus(config)
        wait_for_cluster(peers)  # its gossip settled while the rest started
        yield ScaleStack(
            (hosts[0], hosts[1]),
            prometheus,
            peers,
            replicas,
            relay_store,
            mailbox,
            webapp,
            load,
            answered_before,
        )
