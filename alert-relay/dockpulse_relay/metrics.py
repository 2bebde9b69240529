"""The relay's own metrics, in a registry of its own (tests can build as many as they like)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class QueueCollector(Collector):
    """Queue depth read from the store at scrape time, so it is right after a restart too."""

    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dockpulse_relay_store_up", "1 when the SQLite store answers.")
        depth = GaugeMetricFamily(
            "dockpulse_relay_queue_depth",
            "Alerts waiting in the buffer and mails waiting for delivery.",
            labels=["queue"],
        )
        try:
            counts = self._depth()
        except Exception:  # the store is down: say so rather than fail the scrape
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for queue, count in sorted(counts.items()):
            depth.add_metric([queue], count)
        yield up
        yield depth


class RelayMetrics:
    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "dockpulse_relay_webhook_requests", "Webhook requests.", ["code"], registry=r
        )
        self.received = Counter(
            "dockpulse_relay_alerts_received", "Alerts received, by status.", ["status"], registry=r
        )
        self.deduplicated = Counter(
            "dockpulse_relay_alerts_deduplicated",
            "Alerts received again (same fingerprint, status and start) and ignored.",
            registry=r,
        )
        self.queued = Counter(
            "dockpulse_relay_alerts_queued", "New alerts committed to the store.", registry=r
        )
        self.suppressed = Counter(
            "dockpulse_relay_alerts_suppressed",
            "Alerts not mailed: cooldown, or resolved notifications switched off.",
            ["reason"],
            registry=r,
        )
        self.sent = Counter(
            "dockpulse_relay_mails_sent", "Mails delivered.", ["kind", "backend"], registry=r
        )
        self.failed = Counter(
            "dockpulse_relay_mail_failures",
            "Delivery attempts that failed and will be retried.",
            ["backend"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "dockpulse_relay_mails_dead_lettered",
            "Mails given up on: refused permanently or out of attempts.",
            ["backend"],
            registry=r,
        )
        self.alert_log_errors = Counter(
            "dockpulse_relay_alert_log_errors", "Failed writes to the alert log.", registry=r
        )
        self.delivery_latency = Histogram(
            "dockpulse_relay_delivery_latency_seconds",
            "From the first alert of a mail being received to the mail being delivered.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(QueueCollector(depth))
