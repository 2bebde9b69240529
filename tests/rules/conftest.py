"""Fixtures for the alerting tests: the real Prometheus, Alertmanager and relay on loopback.

Each service runs from a test copy of the repository's config (free ports, temp dirs, short
intervals; see `testkit.local_stack`); everything else in the copy is the real file, so the
tests exercise it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.local_stack import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_DIR,
    REPO_ROOT,
    TEST_INTERVAL,
    TEST_RELAY_TIMINGS,
    LocalStack,
    Service,
    binary,
    exporter_config,
    prometheus_config,
)
from testkit.relay_process import RelayProcess

__all__ = ["ALERTMANAGER_CONFIG", "PROMETHEUS_DIR", "binary", "run_tool"]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool/amtool; stdout and stderr together, as a user sees them."""
    return subprocess.run(
        args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """Services started in tmp_path; all are stopped at the end of the test."""
    with LocalStack(tmp_path) as stack:
        yield stack


@pytest.fixture
def start_relay(local_stack: LocalStack) -> Callable[..., RelayProcess]:
    """`dockpulse-relay` with the outbox backend and test timings; `env` overrides."""
    return lambda **env: local_stack.relay(**{**TEST_RELAY_TIMINGS, **env})


@pytest.fixture
def start_alertmanager(local_stack: LocalStack) -> Callable[[str], Service]:
    """The real Alertmanager (clustering off) from the repository's config."""
    return lambda relay_url: local_stack.alertmanager(relay_url)


@pytest.fixture
def start_prometheus(local_stack: LocalStack) -> Callable[[int, int, str], Service]:
    """The real Prometheus with the repository's rules, scraping and evaluating every second."""

    def start(exporter_port: int, alertmanager_port: int, keep_containers: str) -> Service:
        config = prometheus_config(
            exporter_port, [alertmanager_port], keep_containers, interval=TEST_INTERVAL
        )
        return local_stack.prometheus(config)

    return start


@pytest.fixture
def start_exporter(local_stack: LocalStack) -> Callable[[], Service]:
    """`dockpulse-exporter` against the test engine (DOCKER_HOST), refreshing every 300 ms."""
    return lambda: local_stack.exporter(exporter_config(None, refresh_interval="300ms"))
