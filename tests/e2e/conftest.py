"""The whole stack on real components, for the end-to-end tests.

The demo webapp runs as a real container from the local image (host network, free port) on a
throwaway PostgreSQL; `dockpulse-exporter` watches it and probes its /health; the real
Prometheus, Alertmanager and relay (outbox backend) run as local processes. Every config is the
repository's file with ports and paths changed and, for the test only, shorter timings: 1 s
scrapes and evaluations, ContainerHighCpu `for` 5 s (2 min shipped), ProbeFailed `for` 2 s
(10 s), ContainerMemoryExhaustionPredicted `for` 1 s (15 min), ContainerUnhealthy `for` 1 s
(30 s), Alertmanager group waits and
intervals of at most 1 s, the relay's test timings, and a CPU threshold of 10 % on the webapp
(Docker label), so its 1-minute average crosses it sooner. Every container named
`<prefix>-...` is watched (`MonitoredStack.prefix`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockpulse_stack.engine import Engine
from testkit.helpers import free_port, wait_until
from testkit.local_stack import (
    TEST_INTERVAL,
    TEST_RELAY_TIMINGS,
    LocalStack,
    Service,
    copy_rules,
    exporter_config,
    prometheus_config,
    query,
)
from testkit.postgres import PostgresServer
from testkit.relay_process import RelayProcess
from testkit.webapp_container import WebappContainer, webapp_image

TEST_ALERT_FOR = {
    "ContainerHighCpu": "5s",
    "ProbeFailed": "2s",
    "ContainerMemoryExhaustionPredicted": "1s",
    "ContainerUnhealthy": "1s",
}
TEST_CPU_THRESHOLD_PERCENT = 10
TEST_PROBE = {"interval": "1s", "timeout": "1s"}


@dataclass
class MonitoredStack:
    """The running stack and the app it watches."""

    webapp: WebappContainer
    database: PostgresServer
    prometheus: Service
    relay: RelayProcess
    work_dir: Path
    alertmanager_url: str = ""  # also its --web.external-url: the mails' silence links
    prefix: str = ""  # containers named `<prefix>-...` are watched


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitoredStack]:
    work_dir = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e-test-{uuid.uuid4().hex[:8]}"
    image = webapp_image(engine)
    with ExitStack() as cleanup:
        database = cleanup.enter_context(PostgresServer())
        labels = {"dockpulse.cpu_threshold": str(TEST_CPU_THRESHOLD_PERCENT)}
        webapp = WebappContainer(engine, f"{prefix}-webapp", database.url(), labels)
        cleanup.callback(webapp.remove)
        webapp.run(image)

        local = cleanup.enter_context(LocalStack(work_dir))
        probe_url = f"{webapp.url}/health"
        exporter = local.exporter(
            exporter_config(
                probe_url,
                refresh_interval="500ms",
                probe=TEST_PROBE,
                container_context={"timeout": "10s"},  # a loaded machine's Docker is slow
            )
        )
        # Prometheus first, so the relay draws its mails' graphs from it.
        alertmanager_port = free_port()
        rules = copy_rules(work_dir / "rules", TEST_ALERT_FOR)
        config = prometheus_config(
            exporter.port, [alertmanager_port], f"{prefix}-.*", rules, TEST_INTERVAL
        )
        prometheus = local.prometheus(config)
        relay = local.relay(
            **TEST_RELAY_TIMINGS,
            PROMETHEUS_URL=prometheus.url,
            CHART_BUDGET="15s",  # a loaded machine must not cost a test its graph
            CHART_WINDOW="3m",  # a new stack has minutes of history (docs/mail-example.png)
        )
        alertmanager_url = f"http://127.0.0.1:{alertmanager_port}"
        local.alertmanager(
            relay.url,
            port=alertmanager_port,
            flags=[f"--web.external-url={alertmanager_url}"],
            group_wait="1s",
            group_interval="1s",
        )
        # Watched: running, probed healthy, and the probe tied to the container (compose label).
        seen = f'dockpulse:probe_container_info{{name="{webapp.name}"}}'
        wait_until(lambda: query(prometheus.url, seen), timeout=30)
        wait_until(lambda: query(prometheus.url, "probe_success == 1"), timeout=30)
        yield MonitoredStack(
            webapp, database, prometheus, relay, work_dir, alertmanager_url, prefix
        )
