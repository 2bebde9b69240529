"""The relay's own metrics, in a registry of its own (tests can build as many as they like)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class QueueCollector(Collector):
    """Queue depth read from the store at scrape time, so it is right after a restart too."""

    def __init__(
        self,
        depth: Callable[[], dict[str, int]],
        oldest_pending: Callable[[], float | None] = lambda: None,
        heartbeat_at: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._depth = depth
        self._oldest_pending = oldest_pending
        self._heartbeat_at = heartbeat_at

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "dockpulse_relay_store_up", "1 when the store (SQLite or PostgreSQL) answers."
        )
        depth = GaugeMetricFamily(
            "dockpulse_relay_queue_depth",
            "Alerts waiting in the buffer and mails waiting for delivery.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "dockpulse_relay_oldest_pending_mail_age_seconds",
            "How long the oldest undelivered mail has been queued (0: none).",
        )
        dead = GaugeMetricFamily(
            "dockpulse_relay_dead_letters", "Mails given up on and not re-queued (see the CLI)."
        )
        heartbeat = GaugeMetricFamily(
            "dockpulse_relay_heartbeat_age_seconds",
            "Since the last Watchdog heartbeat arrived (absent: none yet).",
        )
        try:
            counts = self._depth()
            oldest = self._oldest_pending()
            heartbeat_at = self._heartbeat_at()
        except Exception:  # the store is down: say so rather than fail the scrape
            up.add_metric([], 0)
            yield up
            return
        now = time.time()
        up.add_metric([], 1)
        dead.add_metric([], counts.pop("dead_letters", 0))
        for queue, count in sorted(counts.items()):
            depth.add_metric([queue], count)
        age.add_metric([], 0.0 if oldest is None else max(now - oldest, 0.0))
        yield up
        yield depth
        yield age
        yield dead
        if heartbeat_at is not None:
            heartbeat.add_metric([], max(now - heartbeat_at, 0.0))
            yield heartbeat


class RelayMetrics:
    def __init__(
        self,
        depth: Callable[[], dict[str, int]],
        oldest_pending: Callable[[], float | None] = lambda: None,
        heartbeat_at: Callable[[], float | None] = lambda: None,
    ) -> None:
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
            "Alerts not mailed: resolved notifications switched off.",
            ["reason"],
            registry=r,
        )
        self.held = Counter(
            "dockpulse_relay_alerts_held",
            "Alerts held back by the cooldown, to be summed up in a mail when it ends.",
            registry=r,
        )
        self.sent = Counter(
            "dockpulse_relay_mails_sent", "Mails delivered.", ["kind", "backend"], registry=r
        )
        self.failed = Counter(
            "dockpulse_relay_mail_failures",
            "Delivery attempts that failed and will be retried (transient, or account refused).",
            ["backend", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "dockpulse_relay_mails_dead_lettered",
            "Mails given up on: this message refused, or it could not be composed.",
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
        self.backend_healthy = Gauge(
            "dockpulse_relay_backend_healthy",
            "1 when the last delivery attempt through the backend reached it and was answered.",
            ["backend"],
            registry=r,
        )
        self.backend_blocked = Gauge(
            "dockpulse_relay_backend_blocked",
            "1 while the backend refuses the account or credentials: nothing can be sent.",
            ["backend"],
            registry=r,
        )
        self.blind = Gauge(
            "dockpulse_relay_monitoring_blind",
            "1 while the Watchdog heartbeat is missing (monitoring is blind was mailed).",
            registry=r,
        )
        self.silences_up = Gauge(
            "dockpulse_relay_silences_up",
            "1 when the last read of Alertmanager's silences worked (absent: not watched).",
            registry=r,
        )
        self.silence_warnings = Counter(
            "dockpulse_relay_silence_warnings",
            "Silences mailed about (the Watchdog's, a whole severity or host's, or too long).",
            registry=r,
        )
        r.register(QueueCollector(depth, oldest_pending, heartbeat_at))
