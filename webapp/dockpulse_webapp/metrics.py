"""The app's own metrics: requests and server-side latency by endpoint and status.

Under gunicorn every worker is a process, so the CLI turns on prometheus_client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR) and /metrics sums the workers' files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class AppMetrics:
    """The app's metric objects, in their own registry (one per app, so tests can make many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "dockpulse_webapp_requests_total",
            "HTTP requests answered, by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dockpulse_webapp_request_duration_seconds",
            "Time to answer an HTTP request, server side.",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stress_in_progress = Gauge(
            "dockpulse_webapp_stress_in_progress",
            "Stress requests being worked on now, by kind (cpu, memory, db, slow).",
            ["kind"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        labels = (endpoint, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type for /metrics."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
