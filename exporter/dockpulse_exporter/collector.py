"""Turning the latest Snapshot and probe results into metric families.

Resource metrics use cAdvisor's names, units, types and labels (`id` = cgroup path, `name`,
`image`, `container_label_*`) so cAdvisor dashboards and rules work unchanged; the host as a
whole is the `id="/"` series, as cAdvisor's root cgroup.
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

from dockpulse.settings import parse_duration
from dockpulse_exporter.config import LabelFilter
from dockpulse_exporter.families import Family, LabelSet, Row
from dockpulse_exporter.model import Container, Filesystem, Snapshot, Usage
from dockpulse_exporter.probes import FAILURE_REASONS, ProbeResult

log = logging.getLogger(__name__)

CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH_STATUSES = ("healthy", "unhealthy", "starting", "none")
THRESHOLD_LABELS = {
    "cpu": "dockpulse.cpu_threshold",
    "memory": "dockpulse.memory_threshold",
}
EXPECT_RUNNING_LABEL = "dockpulse.expect_running"
# prometheus/rules/forecast.yml: how far ahead ContainerMemoryExhaustionPredicted looks.
FORECAST_HORIZON_LABEL = "dockpulse.memory_forecast_horizon"
ROOT_ID = "/"
NETWORK_FIELDS = (
    ("receive", "bytes", "bytes"),
    ("receive", "packets", "packets"),
    ("receive", "errors", "errors"),
    ("receive", "dropped", "packets_dropped"),
    ("transmit", "bytes", "bytes"),
    ("transmit", "packets", "packets"),
    ("transmit", "errors", "errors"),
    ("transmit", "dropped", "packets_dropped"),
)


def label_name(docker_label: str) -> str:
    """cAdvisor's mapping of a Docker label to a Prometheus label name."""
    return "container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", docker_label)


class LabelSets:
    """Each container's base LabelSet, rebuilt only when one of its values changes."""

    def __init__(self, label_filter: LabelFilter) -> None:
        self.filter = label_filter
        self._allowed: dict[str, tuple[Container, dict[str, str]]] = {}
        self._sets: dict[str, tuple[tuple[str, ...], LabelSet]] = {}

    def exported_labels(self, container: Container) -> dict[str, str]:
        """The container's Docker labels that pass the filter, by Prometheus label name."""
        cached = self._allowed.get(container.id)
        if cached is not None and cached[0] is container:
            return cached[1]
        exported: dict[str, str] = {}
        for key in sorted(container.labels):
            if self.filter.exports(key):
                exported.setdefault(label_name(key), container.labels[key])
        self._allowed[container.id] = (container, exported)
        return exported

    def build(self, rows: list[tuple[str, str, str, str, dict[str, str]]]) -> list[LabelSet]:
        """LabelSets for (key, name, id, image, exported labels) rows; every set carries every
        container_label_* name (empty where absent), as cAdvisor does."""
        names = sorted({name for *_, labels in rows for name in labels})
        fresh: dict[str, tuple[tuple[str, ...], LabelSet]] = {}
        result = []
        for key, name, cgroup_id, image, labels in rows:
            values = (name, cgroup_id, image, *(labels.get(n, "") for n in names))
            cached = self._sets.get(key)
            if cached is None or cached[0] != values:
                items = (("name", name), ("id", cgroup_id), ("image", image))
                cached = (values, LabelSet(items + tuple(zip(names, values[3:], strict=True))))
            fresh[key] = cached
            result.append(cached[1])
        self._sets = fresh
        self._allowed = {k: v for k, v in self._allowed.items() if k in fresh}
        return result


class ContainerMetrics:
    """Builds the container (and root cgroup) families from a Snapshot."""

    def __init__(self, label_filter: LabelFilter | None = None) -> None:
        self.label_sets = LabelSets(label_filter or LabelFilter())
        self._state_cache: dict[str, tuple[Container, LabelSet, list[list[Row]]]] = {}
        self._usage_cache: dict[LabelSet, tuple[tuple[object, ...], list[list[Row]]]] = {}

    def families(self, snapshot: Snapshot) -> list[Family]:
        samples = snapshot.samples
        rows = [
            (
                s.container.id,
                s.container.name,
                s.cgroup_id,
                s.container.image,
                self.label_sets.exported_labels(s.container),
            )
            for s in samples
        ]
        if snapshot.machine is not None:
            rows.append((ROOT_ID, "", ROOT_ID, "", {}))
        label_sets = self.label_sets.build(rows)
        families = self._state(samples, label_sets)
        usage_rows: list[tuple[LabelSet, Usage, float, int | None, bool]] = [
            (labels, s.usage, s.seen_at, s.writable_layer_bytes, False)
            for s, labels in zip(samples, label_sets, strict=False)
            if s.usage is not None
        ]
        machine = snapshot.machine
        filesystem = machine.filesystem if machine is not None else None
        io_current = machine.io_current if machine is not None else 0
        if machine is not None:
            usage_rows.append(
                (
                    label_sets[-1],
                    machine.usage,
                    snapshot.taken_at,
                    machine.filesystem_used_bytes,
                    True,
                )
            )
        families += self._usage(usage_rows, filesystem, io_current)
        return families

    def _state(self, samples: tuple, label_sets: list[LabelSet]) -> list[Family]:
        def gauge(name: str, doc: str, *extra: str) -> Family:
            return Family(name, "gauge", doc, extra)

        up = gauge("container_up", "1 when the container is running, 0 otherwise.")
        state = gauge("container_state", "1 for the container's current state.", "state")
        restarts = Family("container_restarts", "counter", "Restarts Docker made of the container.")
        exit_code = gauge("container_exit_code", "Exit code of the container's last run.")
        oom = gauge("container_oom_killed", "1 when the last run ended by the OOM killer.")
        health = gauge(
            "container_health_status", "1 for the HEALTHCHECK status (none: no check).", "status"
        )
        start = gauge("container_start_time_seconds", "Start time of the container (unix).")
        memory_limit = gauge(
            "container_spec_memory_limit_bytes", "Memory limit of the container, 0 when unlimited."
        )
        reservation = gauge(
            "container_spec_memory_reservation_limit_bytes",
            "Memory reservation (soft limit) of the container, 0 when none.",
        )
        cpu_quota = gauge("container_spec_cpu_quota", "CPU quota (CFS) of the container.")
        cpu_period = gauge("container_spec_cpu_period", "CPU period (CFS) of the container.")
        expected = gauge(
            "dockpulse_container_expected_running",
            "1 unless the label dockpulse.expect_running=false says the container may stop.",
        )
        thresholds = {
            kind: gauge(
                f"dockpulse_container_{kind}_threshold_percent",
                f"Per-container {kind} alert threshold from the label {label}.",
            )
            for kind, label in THRESHOLD_LABELS.items()
        }
        horizon = gauge(
            "dockpulse_container_memory_forecast_horizon_seconds",
            "Per-container horizon of the memory exhaustion forecast from the label "
            f"{FORECAST_HORIZON_LABEL}.",
        )
        families = [
            *(up, state, restarts, exit_code, oom, health, start, memory_limit, reservation),
            *(cpu_quota, cpu_period, expected, *thresholds.values(), horizon),
        ]
        # A container's state rows change only when Docker's view of it (a new Container) or
        # its labels do: reuse them otherwise.
        cache: dict[str, tuple[Container, LabelSet, list[list[Row]]]] = {}
        for sample, labels in zip(samples, label_sets, strict=False):
            c: Container = sample.container
            cached = self._state_cache.get(c.id)
            if cached is None or cached[0] is not c or cached[1] is not labels:
                cached = (c, labels, _state_rows(c, labels))
            cache[c.id] = cached
            for family, rows in zip(families, cached[2], strict=True):
                if rows:
                    family.rows += rows
        self._state_cache = cache
        return families

    def _usage(
        self,
        rows: list[tuple[LabelSet, Usage, float, int | None, bool]],
        filesystem: Filesystem | None,
        io_current: int,
    ) -> list[Family]:
        families = [Family(name, kind, doc, extra) for name, kind, doc, extra in USAGE_FAMILIES]
        last_seen = families[LAST_SEEN].rows
        # Rows depend on the Usage object (the reader returns the same one while a container's
        # files do not change), the labels and the filesystem figures: reuse them otherwise.
        cache: dict[LabelSet, tuple[tuple[object, ...], list[list[Row]]]] = {}
        for labels, usage, seen_at, layer_bytes, is_root in rows:
            key = (usage, layer_bytes, filesystem, io_current)
            cached = self._usage_cache.get(labels)
            if cached is None or not _same_key(cached[0], key):
                cached = (
                    key,
                    _usage_rows(labels, usage, layer_bytes, filesystem, io_current, is_root),
                )
            cache[labels] = cached
            for family, family_rows in zip(families, cached[1], strict=True):
                if family_rows:
                    family.rows += family_rows
            last_seen.append((labels, (), seen_at))
        self._usage_cache = cache
        return families


def _same_key(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    """The same Usage object, and equal filesystem figures."""
    return old[0] is new[0] and old[1:] == new[1:]


def _counter(name: str, doc: str, *extra: str) -> tuple[str, str, str, tuple[str, ...]]:
    return (name, "counter", doc, extra)


def _gauge(name: str, doc: str, *extra: str) -> tuple[str, str, str, tuple[str, ...]]:
    return (name, "gauge", doc, extra)


USAGE_FAMILIES = [
    _counter("container_cpu_usage_seconds", "Total CPU time consumed.", "cpu"),
    _counter("container_cpu_user_seconds", "User CPU time."),
    _counter("container_cpu_system_seconds", "System CPU time."),
    _counter("container_cpu_cfs_periods", "Elapsed CFS periods."),
    _counter("container_cpu_cfs_throttled_periods", "Throttled CFS periods."),
    _counter("container_cpu_cfs_throttled_seconds", "Time the container was throttled."),
    _gauge("container_memory_usage_bytes", "Memory usage incl. cache."),
    _gauge("container_memory_working_set_bytes", "Memory usage minus inactive file cache."),
    _gauge("container_memory_rss", "Anonymous memory (RSS)."),
    _gauge("container_memory_cache", "Page cache memory."),
    _gauge("container_memory_swap", "Swap used."),
    _gauge("container_memory_max_usage_bytes", "Peak memory usage."),
    _gauge("container_last_seen", "Last time the container was seen (unix)."),
    _counter("container_fs_reads_bytes", "Bytes read from block devices.", "device"),
    _counter("container_fs_writes_bytes", "Bytes written to block devices.", "device"),
    _counter("container_fs_reads", "Completed reads from block devices.", "device"),
    _counter("container_fs_writes", "Completed writes to block devices.", "device"),
    _gauge(
        "container_fs_usage_bytes",
        "Bytes used by the container's writable layer on the filesystem (host: in all).",
        "device",
    ),
    _gauge("container_fs_limit_bytes", "Bytes the container's filesystem can hold.", "device"),
    _gauge("container_fs_inodes_free", "Free inodes.", "device"),
    _gauge("container_fs_inodes_total", "Inodes.", "device"),
    _gauge("container_fs_io_current", "I/Os in progress on the filesystem's device.", "device"),
    *(
        _counter(
            f"container_network_{direction}_{metric}",
            f"Network {direction} {metric.replace('_', ' ')}.",
            "interface",
        )
        for direction, _, metric in NETWORK_FIELDS
    ),
    _counter(
        "container_oom_events",
        "OOM kills in the container's cgroup since it started, a child process's included "
        "(memory.events on cgroup v2, memory.oom_control on v1).",
    ),
]
LAST_SEEN = 12


def _usage_rows(
    labels: LabelSet,
    usage: Usage,
    layer_bytes: int | None,
    filesystem: Filesystem | None,
    io_current: int,
    is_root: bool,
) -> list[list[Row]]:
    """One container's rows of each usage family, in USAGE_FAMILIES order (last_seen apart)."""
    no: tuple[str, ...] = ()
    u = usage
    cfs = not is_root
    peak = u.memory_max_usage_bytes
    rows: list[list[Row]] = [
        [(labels, ("total",), u.cpu_usage_seconds)],
        [(labels, no, u.cpu_user_seconds)],
        [(labels, no, u.cpu_system_seconds)],
        [(labels, no, u.cfs_periods)] if cfs else [],
        [(labels, no, u.cfs_throttled_periods)] if cfs else [],
        [(labels, no, u.cfs_throttled_seconds)] if cfs else [],
        [(labels, no, u.memory_usage_bytes)],
        [(labels, no, u.memory_working_set_bytes)],
        [(labels, no, u.memory_rss_bytes)],
        [(labels, no, u.memory_cache_bytes)],
        [(labels, no, u.memory_swap_bytes)],
        [(labels, no, peak)] if peak is not None else [],
        [],  # last_seen: changes every refresh, added by the caller
        *(
            [(labels, (device,), value) for device, value in by_device.items()]
            for by_device in (u.io_read_bytes, u.io_write_bytes, u.io_reads, u.io_writes)
        ),
    ]
    if filesystem is not None and layer_bytes is not None:
        device = (filesystem.device,)
        rows += [
            [(labels, device, layer_bytes)],
            [(labels, device, filesystem.capacity_bytes)],
            [(labels, device, filesystem.inodes_free)],
            [(labels, device, filesystem.inodes_total)],
            [(labels, device, io_current)],
        ]
    else:
        rows += [[], [], [], [], []]
    for direction, attribute, _ in NETWORK_FIELDS:
        field = f"{direction}_{attribute}"
        rows.append(
            [
                (labels, (interface,), getattr(counts, field))
                for interface, counts in u.network.items()
            ]
        )
    oom_events = u.oom_events
    rows.append([(labels, no, oom_events)] if oom_events is not None and not is_root else [])
    return rows


def _state_rows(c: Container, labels: LabelSet) -> list[list[Row]]:
    """The container's rows of each state family, in `_state`'s family order."""
    no: tuple[str, ...] = ()
    thresholds = [_percent(c, docker_label) for docker_label in THRESHOLD_LABELS.values()]
    horizon = _seconds(c, FORECAST_HORIZON_LABEL)
    quota = c.cpu_quota_us > 0
    return [
        [(labels, no, 1 if c.running else 0)],
        [(labels, (name,), 1 if c.state == name else 0) for name in CONTAINER_STATES],
        [(labels, no, c.restart_count)],
        [(labels, no, c.exit_code)],
        [(labels, no, 1 if c.oom_killed else 0)],
        [(labels, (status,), 1 if c.health == status else 0) for status in HEALTH_STATUSES],
        [(labels, no, c.started_at)] if c.started_at > 0 else [],
        [(labels, no, c.memory_limit_bytes)],
        [(labels, no, c.memory_reservation_bytes)],
        [(labels, no, c.cpu_quota_us)] if quota else [],
        [(labels, no, c.cpu_period_us)] if quota else [],
        [(labels, no, 0 if _may_stop(c) else 1)],
        *([(labels, no, value)] if value is not None else [] for value in thresholds),
        [(labels, no, horizon)] if horizon is not None else [],
    ]


class ContainerCollector(Collector):
    """The container families as a prometheus_client Collector (generate_latest, tests)."""

    def __init__(
        self, snapshot: Callable[[], Snapshot], label_filter: LabelFilter | None = None
    ) -> None:
        self._snapshot = snapshot
        self.metrics = ContainerMetrics(label_filter)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families depend on the data

    def collect(self) -> Iterator[Metric]:
        for family in self.metrics.families(self._snapshot()):
            yield family.to_metric()


class ExporterCollector(Collector):
    """The exporter's own health, the host's size, and the probes' latest results."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        probe_results: Callable[[], list[ProbeResult]],
        errors_total: Callable[[], int],
        machine: tuple[int, int] = (0, 0),
        phases: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self._snapshot = snapshot
        self._probe_results = probe_results
        self._errors_total = errors_total
        self._phases = phases
        self._machine_cpu_cores, self._machine_memory_bytes = machine

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        yield from self._self_metrics(self._snapshot())
        yield from self._probe_metrics(self._probe_results())

    def _self_metrics(self, snapshot: Snapshot) -> Iterator[Metric]:
        phases = {"read": snapshot.refresh_seconds, **self._phases()}
        yield GaugeMetricFamily(
            "dockpulse_docker_up",
            "1 when the Docker engine answered at the last refresh, 0 otherwise.",
            value=1 if snapshot.docker_up else 0,
        )
        yield GaugeMetricFamily(
            "dockpulse_collect_duration_seconds",
            "Time the last refresh took, from its start until the new exposition was servable "
            "(read + render + compress).",
            value=sum(phases.values()),
        )
        by_phase = GaugeMetricFamily(
            "dockpulse_collect_phase_duration_seconds",
            "Time each phase of the last refresh took.",
            labels=["phase"],
        )
        for phase, seconds in phases.items():
            by_phase.add_metric([phase], seconds)
        yield by_phase
        yield GaugeMetricFamily(
            "dockpulse_last_refresh_timestamp_seconds",
            "Unix time of the last background refresh.",
            value=snapshot.taken_at,
        )
        yield GaugeMetricFamily(
            "dockpulse_stats_api_containers",
            "Running containers whose cgroup could not be located, read through Docker's "
            "stats API instead (slower; see the log).",
            value=snapshot.stats_api_containers,
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
        """Labels `target` and `probe`; a probe from Docker labels also has its container's
        `name`, as the container series (so one label set per probe, not per family)."""
        success = GaugeMetricFamily("probe_success", "1 when the last probe succeeded.")
        duration = GaugeMetricFamily("probe_duration_seconds", "Duration of the last probe.")
        status = GaugeMetricFamily(
            "probe_http_status_code", "HTTP status of the last probe, 0 without answer."
        )
        latency = HistogramMetricFamily(
            "dockpulse_probe_latency_seconds", "Probe latency distribution."
        )
        slow = GaugeMetricFamily(
            "dockpulse_probe_slow_threshold_seconds",
            "Latency above which the probe counts as slow (from the probe's config).",
        )
        phases = GaugeMetricFamily(
            "probe_http_duration_seconds",
            "Duration of each phase of the last probe, summed over redirects.",
        )
        tls = GaugeMetricFamily("probe_http_ssl", "1 when the last probe's final request used TLS.")
        redirects = GaugeMetricFamily(
            "probe_http_redirects", "Redirects followed by the last probe."
        )
        version = GaugeMetricFamily(
            "probe_http_version", "HTTP version of the last probe's answer."
        )
        length = GaugeMetricFamily(
            "probe_http_content_length",
            "Content-Length of the last probe's answer, -1 when absent.",
        )
        failure = GaugeMetricFamily(
            "dockpulse_probe_failure",
            "1 for the reason the last probe failed (refused, timeout, dns, tls, status, body).",
        )
        expiry = GaugeMetricFamily(
            "probe_ssl_earliest_cert_expiry",
            "notAfter of the last probe's server certificate, Unix seconds.",
        )
        tls_version = GaugeMetricFamily("probe_tls_version_info", "TLS version of the last probe.")

        def add(family: Metric, labels: dict[str, str], value: float, suffix: str = "") -> None:
            family.add_sample(family.name + suffix, labels, value)

        for result in results:
            labels = {"target": str(result.probe.url), "probe": result.probe.name}
            if result.container is not None:
                labels["name"] = result.container
            run = result.last
            add(success, labels, 1 if result.success else 0)
            add(duration, labels, result.duration_seconds)
            add(status, labels, result.status_code)
            for bound, count in result.cumulative_buckets():
                add(latency, {**labels, "le": bound}, count, "_bucket")
            add(latency, labels, result.runs, "_count")
            add(latency, labels, result.latency_sum, "_sum")
            if result.probe.slow_threshold is not None:
                add(slow, labels, result.probe.slow_threshold)
            if result.probe.url.scheme != "tcp":  # HTTP families, as blackbox's http prober
                for phase, seconds in run.phases.items():
                    add(phases, {**labels, "phase": phase}, seconds)
                add(tls, labels, 1 if run.ssl else 0)
                add(redirects, labels, run.redirects)
                add(version, labels, run.http_version)
                add(length, labels, run.content_length)
            for reason in FAILURE_REASONS:
                add(failure, {**labels, "reason": reason}, 1 if run.failure == reason else 0)
            if run.cert_expiry is not None:
                add(expiry, labels, run.cert_expiry)
            if run.tls_version is not None:
                add(tls_version, {**labels, "version": run.tls_version}, 1)
        yield from (success, duration, status, latency, slow)
        yield from (phases, tls, redirects, version, length, failure, expiry, tls_version)


def _may_stop(container: Container) -> bool:
    """Labelled dockpulse.expect_running=false, or a step of a `docker build` (the classic
    builder runs each RUN in a container made from the previous layer's image id, then removes
    it: not a service anyone expects to keep running)."""
    return _is_false(container.labels.get(EXPECT_RUNNING_LABEL)) or container.image.startswith(
        "sha256:"
    )


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


def _seconds(container: Container, docker_label: str) -> float | None:
    """A duration label's value in seconds (`7200`, `2h`, `90m`); None (logged once) when
    missing or not a positive duration."""
    raw = container.labels.get(docker_label)
    if raw is None:
        return None
    try:
        return parse_duration(raw.strip())
    except ValueError:
        pass
    if (container.name, docker_label) not in _warned:
        _warned.add((container.name, docker_label))
        log.warning(
            "container %s: label %s=%r is not a duration like 2h or 7200",
            container.name,
            docker_label,
            raw,
        )
    return None
