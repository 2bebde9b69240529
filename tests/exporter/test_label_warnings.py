"""A number label that does not parse is logged once per container, and again when it changes."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from dockpulse_exporter.collector import ContainerMetrics
from dockpulse_exporter.model import Container, Sample, Snapshot

BASE = Container(
    id="f00d" * 16,
    name="api",
    image="busybox",
    labels={"dockpulse.cpu_threshold": "lots", "dockpulse.memory_forecast_horizon": "2h"},
    state="running",
    pid=1,
    exit_code=0,
    oom_killed=False,
    restart_count=0,
    health="none",
    started_at=1.0,
    network_mode="none",
    cgroup_parent="",
    memory_limit_bytes=0,
    cpu_quota_us=0,
    cpu_period_us=100_000,
)


def warnings_after(metrics: ContainerMetrics, container: Container, caplog) -> list[str]:
    caplog.clear()
    metrics.families(Snapshot(samples=(Sample(container, None, 1.0, "/docker/x", None),)))
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_bad_label_is_logged_once_per_value(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    metrics = ContainerMetrics()
    first = warnings_after(metrics, BASE, caplog)
    assert first == ["container api: label dockpulse.cpu_threshold='lots' is not a percentage"]
    # Docker's next view of the same container (a new object, e.g. after a resync): quiet.
    assert warnings_after(metrics, dataclasses.replace(BASE, restart_count=1), caplog) == []
    changed = dataclasses.replace(
        BASE, labels={**BASE.labels, "dockpulse.memory_forecast_horizon": "soon"}
    )
    assert warnings_after(metrics, changed, caplog) == [
        "container api: label dockpulse.memory_forecast_horizon='soon' is not a duration like "
        "2h or 7200"
    ]
