"""The custom Collector: turns the latest Snapshot and probe results into metric families.

Resource metrics use cAdvisor's names, units and labels (`name`, `id`, `image`,
`container_label_*`) so cAdvisor dashboards and rules work unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dockpulse_exporter.model import Container, Sample, Snapshot, Usage
from dockpulse_exporter.probes import ProbeResult

log = logging.getLogger(__name__)

COMPOSE_LABELS = ("com.docker.compose.project", "com.docker.compose.service")
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH_STATUSES = ("healthy", "unhealthy", "starting", "none")
THRESHOLD_LABELS = {
    "cpu": "dockpulse.cpu_threshold",
    "memory": "dockpulse.memory_threshold",
}
EXPECT_RUNNING_LABEL = "dockpulse.expect_running"
PROBE_LABELS = ["target", "probe"]


def label_name(docker_label: str) -> str:
    """cAdvisor's mapping of a Docker label to a Prometheus label name."""
    return "container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", docker_label)


class ContainerCollector(Collector):
    """Per-container state and usage from the latest snapshot; never calls Docker itself."""

    def __init__(self, snapshot: Callable[[], Snapshot], exported_labels: list[str]) -> None:
        self._snapshot = snapshot
        self._docker_labels = list(dict.fromkeys([*COMPOSE_LABELS, *exported_labels]))
        self.label_names = ["name", "id", "image", *map(label_name, self._docker_labels)]

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families depend on the data

    def collect(self) -> Iterator[Metric]:
        samples = self._snapshot().samples
        yield from self._state_metrics(samples)
        yield from self._usage_metrics(samples)

    def _labels(self, container: Container) -> list[str]:
        return [
            container.name,
            container.id,
            container.image,
            *(container.labels.get(label, "") for label in self._docker_labels),
        ]

    def _gauge(self, name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*self.label_names, *(extra or [])])

    def _counter(self, name: str, doc: str, extra: list[str] | None = None) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=[*self.label_names, *(extra or [])])

    def _state_metrics(self, samples: tuple[Sample, ...]) -> Iterator[Metric]:
        up = self._gauge("container_up", "1 when the container is running, 0 otherwise.")
        state = self._gauge("container_state", "1 for the container's current state.", ["state"])
        restarts = self._counter("container_restarts", "Restarts Docker made of the container.")
        exit_code = self._gauge("container_exit_code", "Exit code of the container's last run.")
        oom = self._gauge("container_oom_killed", "1 when the last run ended by the OOM killer.")
        health = self._gauge(
            "container_health_status", "1 for the HEALTHCHECK status (none: no check).", ["status"]
        )
        start = self._gauge("container_start_time_seconds", "Start time of the container (unix).")
        memory_limit = self._gauge(
            "container_spec_memory_limit_bytes", "Memory limit of the container, 0 when unlimited."
        )
        cpu_quota = self._gauge("container_spec_cpu_quota", "CPU quota (CFS) of the container.")
        cpu_period = self._gauge("container_spec_cpu_period", "CPU period (CFS) of the container.")
        expected = self._gauge(
            "dockpulse_container_expected_running",
            "1 unless the label dockpulse.expect_running=false says the container may stop.",
        )
        thresholds = {
            kind: self._gauge(
                f"dockpulse_container_{kind}_threshold_percent",
                f"Per-container {kind} alert threshold from the label {label}.",
            )
            for kind, label in THRESHOLD_LABELS.items()
        }
        for sample in samples:
            c = sample.container
            labels = self._labels(c)
            up.add_metric(labels, 1 if c.running else 0)
            for name in CONTAINER_STATES:
                state.add_metric([*labels, name], 1 if c.state == name else 0)
            restarts.add_metric(labels, c.restart_count)
            exit_code.add_metric(labels, c.exit_code)
            oom.add_metric(labels, 1 if c.oom_killed else 0)
            for status in HEALTH_STATUSES:
                health.add_metric([*labels, status], 1 if c.health == status else 0)
            if c.started_at > 0:
                start.add_metric(labels, c.started_at)
            memory_limit.add_metric(labels, c.memory_limit_bytes)
            if c.cpu_quota_us > 0:
                cpu_quota.add_metric(labels, c.cpu_quota_us)
                cpu_period.add_metric(labels, c.cpu_period_us)
            expected.add_metric(labels, 0 if _is_false(c.labels.get(EXPECT_RUNNING_LABEL)) else 1)
            for kind, docker_label in THRESHOLD_LABELS.items():
                value = _percent(c, docker_label)
                if value is not None:
                    thresholds[kind].add_metric(labels, value)
        yield from (up, state, restarts, exit_code, oom, health, start)
        yield from (memory_limit, cpu_quota, cpu_period, expected, *thresholds.values())

    def _usage_metrics(self, samples: tuple[Sample, ...]) -> Iterator[Metric]:
        cpu_fields: list[tuple[str, str, Callable[[Usage], float]]] = [
            ("container_cpu_user_seconds", "User CPU time.", lambda u: u.cpu_user_seconds),
            ("container_cpu_system_seconds", "System CPU time.", lambda u: u.cpu_system_seconds),
            ("container_cpu_cfs_periods", "Elapsed CFS periods.", lambda u: u.cfs_periods),
            (
                "container_cpu_cfs_throttled_periods",
                "Throttled CFS periods.",
                lambda u: u.cfs_throttled_periods,
            ),
            (
                "container_cpu_cfs_throttled_seconds",
                "Time the container was throttled.",
                lambda u: u.cfs_throttled_seconds,
            ),
        ]
        memory_fields: list[tuple[str, str, Callable[[Usage], float]]] = [
            (
                "container_memory_usage_bytes",
                "Memory usage incl. cache.",
                lambda u: u.memory_usage_bytes,
            ),
            (
                "container_memory_working_set_bytes",
                "Memory usage minus inactive file cache.",
                lambda u: u.memory_working_set_bytes,
            ),
            ("container_memory_rss", "Anonymous memory (RSS).", lambda u: u.memory_rss_bytes),
            ("container_memory_cache", "Page cache memory.", lambda u: u.memory_cache_bytes),
        ]
        cpu_total = self._counter(
            "container_cpu_usage_seconds", "Total CPU time consumed.", ["cpu"]
        )
        counters = [(self._counter(name, doc), get) for name, doc, get in cpu_fields]
        gauges = [(self._gauge(name, doc), get) for name, doc, get in memory_fields]
        last_seen = self._gauge("container_last_seen", "Last time the container was seen (unix).")
        reads = self._counter(
            "container_fs_reads_bytes", "Bytes read from block devices.", ["device"]
        )
        writes = self._counter(
            "container_fs_writes_bytes", "Bytes written to block devices.", ["device"]
        )
        network = {
            (direction, field): self._counter(
                f"container_network_{direction}_{metric}",
                f"Network {direction} {metric.replace('_', ' ')}.",
                ["interface"],
            )
            for direction in ("receive", "transmit")
            for field, metric in (
                ("bytes", "bytes"),
                ("packets", "packets"),
                ("errors", "errors"),
                ("dropped", "packets_dropped"),
            )
        }
        for sample in samples:
            usage = sample.usage
            if usage is None:
                continue
            labels = self._labels(sample.container)
            cpu_total.add_metric([*labels, "total"], usage.cpu_usage_seconds)
            for family, get in (*counters, *gauges):
                family.add_metric(labels, get(usage))
            last_seen.add_metric(labels, sample.seen_at)
            for device, value in usage.io_read_bytes.items():
                reads.add_metric([*labels, device], value)
            for device, value in usage.io_write_bytes.items():
                writes.add_metric([*labels, device], value)
            for interface, counts in usage.network.items():
                for (direction, field), family in network.items():
                    value = getattr(counts, f"{direction}_{field}")
                    family.add_metric([*labels, interface], value)
        yield cpu_total
        yield from (family for family, _ in (*counters, *gauges))
        yield from (last_seen, reads, writes, *network.values())


class ExporterCollector(Collector):
    """The exporter's own health, the host's size, and the probes' latest results."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        probe_results: Callable[[], list[ProbeResult]],
        errors_total: Callable[[], int],
        machine: tuple[int, int] = (0, 0),
    ) -> None:
        self._snapshot = snapshot
        self._probe_results = probe_results
        self._errors_total = errors_total
        self._machine_cpu_cores, self._machine_memory_bytes = machine

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        yield from self._self_metrics(self._snapshot())
        yield from self._probe_metrics(self._probe_results())

    def _self_metrics(self, snapshot: Snapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "dockpulse_docker_up",
            "1 when the Docker engine answered at the last refresh, 0 otherwise.",
            value=1 if snapshot.docker_up else 0,
        )
        yield GaugeMetricFamily(
            "dockpulse_collect_duration_seconds",
            "Time the last background refresh of all containers took.",
            value=snapshot.refresh_seconds,
        )
        yield GaugeMetricFamily(
            "dockpulse_last_refresh_timestamp_seconds",
            "Unix time of the last background refresh.",
            value=snapshot.taken_at,
        )
        yield GaugeMetricFamily(
            "machine_cpu_cores", "CPU cores of the Docker host.", value=self._machine_cpu_cores
        )
        yield GaugeMetricFamily(
            "machine_memory_bytes", "Memory of the Docker host.", value=self._machine_memory_bytes
        )
        yield CounterMetricFamily(
            "dockpulse_collect_errors",
            "Errors talking to Docker or reading container usage.",
            value=self._errors_total(),
        )

    @staticmethod
    def _probe_metrics(results: list[ProbeResult]) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "probe_success", "1 when the last probe succeeded.", labels=PROBE_LABELS
        )
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "Duration of the last probe.", labels=PROBE_LABELS
        )
        status = GaugeMetricFamily(
            "probe_http_status_code",
            "HTTP status of the last probe, 0 without answer.",
            labels=PROBE_LABELS,
        )
        latency = HistogramMetricFamily(
            "dockpulse_probe_latency_seconds", "Probe latency distribution.", labels=PROBE_LABELS
        )
        slow = GaugeMetricFamily(
            "dockpulse_probe_slow_threshold_seconds",
            "Latency above which the probe counts as slow (from the probe's config).",
            labels=PROBE_LABELS,
        )
        for result in results:
            labels = [str(result.probe.url), result.probe.name]
            success.add_metric(labels, 1 if result.success else 0)
            duration.add_metric(labels, result.duration_seconds)
            status.add_metric(labels, result.status_code)
            latency.add_metric(labels, result.cumulative_buckets(), result.latency_sum)
            if result.probe.slow_threshold is not None:
                slow.add_metric(labels, result.probe.slow_threshold)
        yield from (success, duration, status, latency, slow)


def _is_false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"false", "0", "no"}


_warned: set[tuple[str, str]] = set()


def _percent(container: Container, docker_label: str) -> float | None:
    """A threshold label's value in percent; None (logged once) when missing or not a number."""
    raw = container.labels.get(docker_label)
    if raw is None:
        return None
    try:
        value = float(raw.strip().rstrip("%"))
    except ValueError:
        value = -1.0
    if 0 < value <= 1000:
        return value
    if (container.name, docker_label) not in _warned:
        _warned.add((container.name, docker_label))
        log.warning(
            "container %s: label %s=%r is not a percentage", container.name, docker_label, raw
        )
    return None
