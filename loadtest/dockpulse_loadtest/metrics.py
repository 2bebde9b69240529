"""A small Prometheus exporter for Locust (Locust ships none that is maintained).

Started from Locust's `init` event on the process that owns the statistics (standalone or
master, never a worker), it reads the runner's live state at each scrape. A master's statistics
are what its workers reported, so on a master every figure is the total of all workers:

- `locust_profile_info{profile}`: 1, naming the load profile (the shape class) of this run;
- `dockpulse_loadtest_active{profile}`: 1 while users are spawning or running, else 0;
- `dockpulse_loadtest_users{user_class}`: users running now (on a master: on all its workers);
- `dockpulse_loadtest_workers`: workers connected to this master (0 when Locust runs alone);
- `dockpulse_loadtest_requests_total` / `_failures_total{method,name}`: counters;
- `dockpulse_loadtest_requests_per_second` / `_failures_per_second`: Locust's current rates;
- `dockpulse_loadtest_response_time_seconds{method,name}`: histogram of response times.

Port: LOADTEST_METRICS_PORT (9646); address: LOADTEST_METRICS_ADDRESS (127.0.0.1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

log = logging.getLogger("dockpulse_loadtest")

DEFAULT_PORT = 9646
DEFAULT_ADDRESS = "127.0.0.1"
ACTIVE_STATES = ("spawning", "running")
BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def profile_name(environment: Any) -> str:
    """The running profile: the shape's `name`, else its class name, else `none`."""
    shape = getattr(environment, "shape_class", None)
    if shape is None:
        return "none"
    return getattr(shape, "name", None) or type(shape).__name__


def _histogram(response_times: dict[int, int], total_ms: float) -> tuple[list, float]:
    """Cumulative buckets (in seconds) from Locust's {rounded milliseconds: count} map."""
    buckets = []
    for bound in BUCKETS_SECONDS:
        count = sum(n for ms, n in response_times.items() if ms <= bound * 1000)
        buckets.append((str(bound), count))
    buckets.append(("+Inf", sum(response_times.values())))
    return buckets, total_ms / 1000


def running_users(runner: Any) -> dict[str, int]:
    """Users running now by class: a master runs none itself, its workers report theirs."""
    reported = getattr(runner, "reported_user_classes_count", None)
    return dict(reported) if reported is not None else runner.user_classes_count


class LoadtestCollector:
    """Yields the metrics above from `environment.runner` at each scrape."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment

    def collect(self) -> Iterator[Metric]:
        runner = self.environment.runner
        profile = profile_name(self.environment)
        info = GaugeMetricFamily(
            "locust_profile_info", "The load profile of this run (always 1).", labels=["profile"]
        )
        info.add_metric([profile], 1)
        yield info
        active = GaugeMetricFamily(
            "dockpulse_loadtest_active",
            "1 while the load test is spawning or running users, else 0.",
            labels=["profile"],
        )
        active.add_metric([profile], 1 if runner and runner.state in ACTIVE_STATES else 0)
        yield active
        if runner is None:
            return
        users = GaugeMetricFamily(
            "dockpulse_loadtest_users", "Users running now.", labels=["user_class"]
        )
        for user_class, count in sorted(running_users(runner).items()):
            users.add_metric([user_class], count)
        yield users
        yield GaugeMetricFamily(
            "dockpulse_loadtest_workers",
            "Workers connected to this master (0 when Locust runs alone).",
            value=getattr(runner, "worker_count", 0),
        )
        yield from self._request_metrics(runner.stats)

    def _request_metrics(self, stats: Any) -> Iterator[Metric]:
        labels = ["method", "name"]
        requests = CounterMetricFamily(
            "dockpulse_loadtest_requests", "Requests sent (failures included).", labels=labels
        )
        failures = CounterMetricFamily(
            "dockpulse_loadtest_failures", "Requests that failed.", labels=labels
        )
        latency = HistogramMetricFamily(
            "dockpulse_loadtest_response_time_seconds",
            "Response times as the load generator saw them.",
            labels=labels,
        )
        for entry in sorted(stats.entries.values(), key=lambda e: (e.name, e.method or "")):
            key = [entry.method or "", entry.name]
            requests.add_metric(key, entry.num_requests)
            failures.add_metric(key, entry.num_failures)
            buckets, total = _histogram(dict(entry.response_times), entry.total_response_time)
            latency.add_metric(key, buckets, total)
        yield requests
        yield failures
        yield latency
        for name, value, help_text in (
            ("requests_per_second", stats.total.current_rps, "Requests per second now."),
            ("failures_per_second", stats.total.current_fail_per_sec, "Failures per second now."),
        ):
            yield GaugeMetricFamily(f"dockpulse_loadtest_{name}", help_text, value=value)


def start_exporter(environment: Any, environ: dict[str, str] | None = None) -> int | None:
    """Serve the metrics in the background; returns the port, None on a worker or on error."""
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return None
    environ = dict(os.environ) if environ is None else environ
    address = environ.get("LOADTEST_METRICS_ADDRESS") or DEFAULT_ADDRESS
    raw_port = environ.get("LOADTEST_METRICS_PORT") or str(DEFAULT_PORT)
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        log.error("LOADTEST_METRICS_PORT: expected a port number, got %r; no metrics", raw_port)
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoadtestCollector(environment))
    try:
        start_http_server(int(raw_port), addr=address, registry=registry)
    except OSError as exc:
        log.error("cannot serve load test metrics on %s:%s: %s", address, raw_port, exc)
        return None
    log.info("load test metrics on http://%s:%s/metrics", address, raw_port)
    return int(raw_port)
