"""Turning the latest Snapshot and probe results into metric families.

Resource metrics use cAdvisor's names, units, types and labels (`id` = cgroup path, `name`,
`image`, `container_label_*`) so cAdvisor dashboards and rules work unchanged; the host as a
whole is the `id="/"` series, as cAdvisor's root cgroup.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dockpulse.settings import parse_duration
from dockpulse_exporter.config import LabelFilter
from dockpulse_exporter.families import (
    NO_EXTRA,
    Family,
    FamilySpec,
    LabelSet,
    Row,
    Series,
    counter,
    gauge,
)
from dockpulse_exporter.model import Container, Filesystem, Sample, Snapshot, Usage
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

    def build(self, rows: list[tuple[str, str, str, str, dict[str, str]]]) -> dict[str, LabelSet]:
        """LabelSets for (key, name, id, image, exported labels) rows, by key; every set carries
        every container_label_* name (empty where absent), as cAdvisor does."""
        names = sorted({name for *_, labels in rows for name in labels})
        fresh: dict[str, tuple[tuple[str, ...], LabelSet]] = {}
        for key, name, cgroup_id, image, labels in rows:
            values = (name, cgroup_id, image, *(labels.get(n, "") for n in names))
            cached = self._sets.get(key)
            if cached is None or cached[0] != values:
                items = (("name", name), ("id", cgroup_id), ("image", image))
                cached = (values, LabelSet(items + tuple(zip(names, values[3:], strict=True))))
            fresh[key] = cached
        self._sets = fresh
        self._allowed = {k: v for k, v in self._allowed.items() if k in fresh}
        return {key: label_set for key, (_, label_set) in fresh.items()}


class UsageSource(NamedTuple):
    """What one cgroup's usage rows are made of (a container's, or the host's root cgroup)."""

    usage: Usage
    seen_at: float
    layer_bytes: int | None  # the writable layer's bytes (the host: the filesystem's used)
    filesystem: Filesystem | None
    io_current: int
    is_root: bool

    @property
    def on_filesystem(self) -> bool:
        return self.filesystem is not None and self.layer_bytes is not None


def _by_device(counts: Callable[[Usage], dict[str, int]]) -> Callable[[UsageSource], Series]:
    return lambda s: [((device,), value) for device, value in counts(s.usage).items()]


def _on_filesystem(value: Callable[[UsageSource], float]) -> Callable[[UsageSource], Series]:
    """A figure of the filesystem the writable layers live on, by its device."""
    return lambda s: [((s.filesystem.device,), value(s))] if s.on_filesystem else []


def _by_interface(field: str) -> Callable[[UsageSource], Series]:
    return lambda s: [
        ((interface,), getattr(counts, field)) for interface, counts in s.usage.network.items()
    ]


# The container state families, from Docker's view of a container.
STATE_FAMILIES: tuple[FamilySpec[Container], ...] = (
    gauge("container_up", "1 when the container is running, 0 otherwise.",
          value=lambda c: 1 if c.running else 0),
    gauge("container_state", "1 for the container's current state.", extra=("state",),
          series=lambda c: [((name,), 1 if c.state == name else 0) for name in CONTAINER_STATES]),
    counter("container_restarts", "Restarts Docker made of the container.",
            value=lambda c: c.restart_count),
    gauge("container_exit_code", "Exit code of the container's last run.",
          value=lambda c: c.exit_code),
    gauge("container_oom_killed", "1 when the last run ended by the OOM killer.",
          value=lambda c: 1 if c.oom_killed else 0),
    gauge("container_health_status", "1 for the HEALTHCHECK status (none: no check).",
          extra=("status",),
          series=lambda c: [((s,), 1 if c.health == s else 0) for s in HEALTH_STATUSES]),
    gauge("container_start_time_seconds", "Start time of the container (unix).",
          value=lambda c: c.started_at if c.started_at > 0 else None),
    gauge("container_spec_memory_limit_bytes", "Memory limit of the container, 0 when unlimited.",
          value=lambda c: c.memory_limit_bytes),
    gauge("container_spec_memory_reservation_limit_bytes",
          "Memory reservation (soft limit) of the container, 0 when none.",
          value=lambda c: c.memory_reservation_bytes),
    gauge("container_spec_cpu_quota", "CPU quota (CFS) of the container.",
          value=lambda c: c.cpu_quota_us if c.cpu_quota_us > 0 else None),
    gauge("container_spec_cpu_period", "CPU period (CFS) of the container.",
          value=lambda c: c.cpu_period_us if c.cpu_quota_us > 0 else None),
    gauge("dockpulse_container_expected_running",
          "1 unless the label dockpulse.expect_running=false says the container may stop.",
          value=lambda c: 0 if _may_stop(c) else 1),
    *(
        gauge(f"dockpulse_container_{kind}_threshold_percent",
              f"Per-container {kind} alert threshold from the label {label}.",
              value=lambda c, label=label: _percent(c.labels.get(label)))
        for kind, label in THRESHOLD_LABELS.items()
    ),
    gauge("dockpulse_container_memory_forecast_horizon_seconds",
          "Per-container horizon of the memory exhaustion forecast from the label "
          f"{FORECAST_HORIZON_LABEL}.",
          value=lambda c: _seconds(c.labels.get(FORECAST_HORIZON_LABEL))),
)  # fmt: skip

# The usage families, from a container's cgroup (or the host's root cgroup).
USAGE_FAMILIES: tuple[FamilySpec[UsageSource], ...] = (
    counter("container_cpu_usage_seconds", "Total CPU time consumed.", extra=("cpu",),
            series=lambda s: [(("total",), s.usage.cpu_usage_seconds)]),
    counter("container_cpu_user_seconds", "User CPU time.",
            value=lambda s: s.usage.cpu_user_seconds),
    counter("container_cpu_system_seconds", "System CPU time.",
            value=lambda s: s.usage.cpu_system_seconds),
    counter("container_cpu_cfs_periods", "Elapsed CFS periods.",
            value=lambda s: None if s.is_root else s.usage.cfs_periods),
    counter("container_cpu_cfs_throttled_periods", "Throttled CFS periods.",
            value=lambda s: None if s.is_root else s.usage.cfs_throttled_periods),
    counter("container_cpu_cfs_throttled_seconds", "Time the container was throttled.",
            value=lambda s: None if s.is_root else s.usage.cfs_throttled_seconds),
    gauge("container_memory_usage_bytes", "Memory usage incl. cache.",
          value=lambda s: s.usage.memory_usage_bytes),
    gauge("container_memory_working_set_bytes", "Memory usage minus inactive file cache.",
          value=lambda s: s.usage.memory_working_set_bytes),
    gauge("container_memory_rss", "Anonymous memory (RSS).",
          value=lambda s: s.usage.memory_rss_bytes),
    gauge("container_memory_cache", "Page cache memory.",
          value=lambda s: s.usage.memory_cache_bytes),
    gauge("container_memory_swap", "Swap used.",
          value=lambda s: s.usage.memory_swap_bytes),
    gauge("container_memory_max_usage_bytes", "Peak memory usage.",
          value=lambda s: s.usage.memory_max_usage_bytes),
    gauge("container_last_seen", "Last time the container was seen (unix).",
          value=lambda s: s.seen_at, per_refresh=True),
    counter("container_fs_reads_bytes", "Bytes read from block devices.", extra=("device",),
            series=_by_device(lambda u: u.io_read_bytes)),
    counter("container_fs_writes_bytes", "Bytes written to block devices.", extra=("device",),
            series=_by_device(lambda u: u.io_write_bytes)),
    counter("container_fs_reads", "Completed reads from block devices.", extra=("device",),
            series=_by_device(lambda u: u.io_reads)),
    counter("container_fs_writes", "Completed writes to block devices.", extra=("device",),
            series=_by_device(lambda u: u.io_writes)),
    gauge("container_fs_usage_bytes",
          "Bytes used by the container's writable layer on the filesystem (host: in all).",
          extra=("device",), series=_on_filesystem(lambda s: s.layer_bytes)),
    gauge("container_fs_limit_bytes", "Bytes the container's filesystem can hold.",
          extra=("device",), series=_on_filesystem(lambda s: s.filesystem.capacity_bytes)),
    gauge("container_fs_inodes_free", "Free inodes.",
          extra=("device",), series=_on_filesystem(lambda s: s.filesystem.inodes_free)),
    gauge("container_fs_inodes_total", "Inodes.",
          extra=("device",), series=_on_filesystem(lambda s: s.filesystem.inodes_total)),
    gauge("container_fs_io_current", "I/Os in progress on the filesystem's device.",
          extra=("device",), series=_on_filesystem(lambda s: s.io_current)),
    *(
        counter(f"container_network_{direction}_{metric}",
                f"Network {direction} {metric.replace('_', ' ')}.", extra=("interface",),
                series=_by_interface(f"{direction}_{attribute}"))
        for direction, attribute, metric in NETWORK_FIELDS
    ),
    counter("container_oom_events",
            "OOM kills in the container's cgroup since it started, a child process's included "
            "(memory.events on cgroup v2, memory.oom_control on v1).",
            value=lambda s: None if s.is_root else s.usage.oom_events),
)  # fmt: skip

# Families whose rows are made anew at every refresh, by their place in USAGE_FAMILIES.
_PER_REFRESH = tuple((i, spec) for i, spec in enumerate(USAGE_FAMILIES) if spec.per_refresh)


def _cached_rows(
    specs: tuple[FamilySpec, ...], labels: LabelSet, source: object
) -> list[list[Row]]:
    """A source's rows of each family in `specs`, in their order; per-refresh ones left empty."""
    rows: list[list[Row]] = []
    append = rows.append
    for spec in specs:  # FamilySpec.rows inlined: this runs for every changed container
        if spec.per_refresh:
            append([])
        elif spec.value is not None:
            value = spec.value(source)
            append([] if value is None else [(labels, NO_EXTRA, value)])
        else:
            append([(labels, extra, value) for extra, value in spec.series(source)])
    return rows


class ContainerMetrics:
    """Builds the container (and root cgroup) families from a Snapshot."""

    def __init__(self, label_filter: LabelFilter | None = None) -> None:
        self.label_sets = LabelSets(label_filter or LabelFilter())
        self._state_cache: dict[str, tuple[Container, LabelSet, list[list[Row]]]] = {}
        self._usage_cache: dict[LabelSet, tuple[tuple[object, ...], list[list[Row]]]] = {}

    def families(self, snapshot: Snapshot) -> list[Family]:
        samples = snapshot.samples
        machine = snapshot.machine
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
        if machine is not None:
            rows.append((ROOT_ID, "", ROOT_ID, "", {}))
        label_sets = self.label_sets.build(rows)
        labelled = [(s, label_sets[s.container.id]) for s in samples]
        filesystem = machine.filesystem if machine is not None else None
        io_current = machine.io_current if machine is not None else 0
        sources = [
            (
                labels,
                UsageSource(
                    s.usage, s.seen_at, s.writable_layer_bytes, filesystem, io_current, False
                ),
            )
            for s, labels in labelled
            if s.usage is not None
        ]
        if machine is not None:
            root = UsageSource(
                machine.usage,
                snapshot.taken_at,
                machine.filesystem_used_bytes,
                filesystem,
                io_current,
                True,
            )
            sources.append((label_sets[ROOT_ID], root))
        return self._state(labelled) + self._usage(sources)

    def _state(self, labelled: list[tuple[Sample, LabelSet]]) -> list[Family]:
        families = [spec.family() for spec in STATE_FAMILIES]
        # A container's state rows change only when Docker's view of it (a new Container) or
        # its labels do: reuse them otherwise.
        cache: dict[str, tuple[Container, LabelSet, list[list[Row]]]] = {}
        for sample, labels in labelled:
            c = sample.container
            cached = self._state_cache.get(c.id)
            if cached is None or cached[0] is not c or cached[1] is not labels:
                _warn_of_bad_labels(c, cached[0] if cached is not None else None)
                cached = (c, labels, _cached_rows(STATE_FAMILIES, labels, c))
            cache[c.id] = cached
            for family, rows in zip(families, cached[2], strict=True):
                if rows:
                    family.rows += rows
        self._state_cache = cache
        return families

    def _usage(self, sources: list[tuple[LabelSet, UsageSource]]) -> list[Family]:
        families = [spec.family() for spec in USAGE_FAMILIES]
        # Rows depend on the Usage object (the reader returns the same one while a container's
        # files do not change), the labels and the filesystem figures: reuse them otherwise.
        cache: dict[LabelSet, tuple[tuple[object, ...], list[list[Row]]]] = {}
        for labels, source in sources:
            key = (source.usage, source.layer_bytes, source.filesystem, source.io_current)
            cached = self._usage_cache.get(labels)
            if cached is None or not _same_key(cached[0], key):
                cached = (key, _cached_rows(USAGE_FAMILIES, labels, source))
            cache[labels] = cached
            for family, rows in zip(families, cached[1], strict=True):
                if rows:
                    family.rows += rows
            for index, spec in _PER_REFRESH:
                families[index].rows += spec.rows(labels, source)
        self._usage_cache = cache
        return families


def _same_key(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    """The same Usage object, and equal filesystem figures."""
    return old[0] is new[0] and old[1:] == new[1:]


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


def _percent(raw: str | None) -> float | None:
    """A threshold label's value in percent; None when missing or not a number in (0, 1000]."""
    if raw is None:
        return None
    try:
        value = float(raw.strip().rstrip("%"))
    except ValueError:
        return None
    return value if 0 < value <= 1000 else None


def _seconds(raw: str | None) -> float | None:
    """A duration label's value in seconds (`7200`, `2h`, `90m`); None when missing or not a
    positive duration."""
    if raw is None:
        return None
    try:
        return parse_duration(raw.strip())
    except ValueError:
        return None


# The labels a family reads a number from, their parser, and what a value must be.
NUMBER_LABELS: dict[str, tuple[Callable[[str | None], float | None], str]] = {
    **{label: (_percent, "a percentage") for label in THRESHOLD_LABELS.values()},
    FORECAST_HORIZON_LABEL: (_seconds, "a duration like 2h or 7200"),
}


def _warn_of_bad_labels(container: Container, previous: Container | None) -> None:
    """Log each number label of the container that does not parse, once: not again while the
    same container (`previous`, its last view) keeps the same value."""
    for docker_label, (parse, what) in NUMBER_LABELS.items():
        raw = container.labels.get(docker_label)
        if raw is None or parse(raw) is not None:
            continue
        if previous is not None and previous.labels.get(docker_label) == raw:
            continue
        log.warning("container %s: label %s=%r is not %s", container.name, docker_label, raw, what)
