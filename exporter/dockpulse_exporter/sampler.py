"""The background refresh: containers from the watcher, usage from cgroups, one Snapshot."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from dockpulse_exporter.cgroups import CgroupGone, CgroupReader
from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_exporter.machine import FilesystemSampler, FilesystemState, root_usage
from dockpulse_exporter.model import Container, MachineSample, Sample, Snapshot, Usage
from dockpulse_exporter.stats_api import StatsApiReader

log = logging.getLogger(__name__)

EVENT_SETTLE_SECONDS = 0.5
STOPPED_PEAKS = 2000  # stopped containers whose last memory peak is remembered


def memory_peak_of(usage: Usage) -> int | None:
    """A sample's memory peak: the kernel's where it keeps one, else the usage then."""
    return usage.memory_max_usage_bytes or usage.memory_usage_bytes or None


class Sampler:
    """Refreshes every `interval`, and at once when Docker reports a change."""

    def __init__(
        self,
        watcher: DockerWatcher,
        cgroups: CgroupReader,
        interval: float,
        stats_api: StatsApiReader | None = None,
        on_refresh: Callable[[], None] | None = None,
        filesystem: FilesystemSampler | None = None,
        proc_root: Path | None = None,
    ) -> None:
        self.watcher = watcher
        self.cgroups = cgroups
        self.interval = interval
        self.stats_api = stats_api or StatsApiReader(devices=cgroups.devices)
        self.on_refresh = on_refresh
        self.filesystem = filesystem
        self.proc_root = proc_root  # None: no machine-wide (id="/") series
        self.snapshot = Snapshot()
        self.errors_total = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._known_ids: set[str] = set()
        self._running_ids: set[str] = set()
        self._fallback_logged: set[str] = set()
        # The highest memory use sampled per container, kept after it stops (the alert
        # mail's "why"): the refresh in which it dies often reads nothing from its cgroup.
        self._peaks: OrderedDict[str, int] = OrderedDict()

    def request_refresh(self) -> None:
        """Ask for a refresh now (called on Docker events)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.stats_api.close()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a refresh must never kill the thread
                self.errors_total += 1
                log.exception("refresh failed")
            if self._wake.wait(self.interval):
                # Woken by a Docker event: let a burst of events settle into one refresh.
                self._stop.wait(min(EVENT_SETTLE_SECONDS, self.interval))
            self._wake.clear()

    def refresh(self) -> Snapshot:
        started = time.perf_counter()
        containers = self.watcher.containers()
        self.cgroups.locator.driver = self.watcher.cgroup_driver
        running = [c for c in containers if c.running]
        self._release_gone(containers, running)
        usages, fallback = self._read_usage(running)
        filesystem = self.filesystem.state if self.filesystem is not None else FilesystemState()
        layers = filesystem.layer_bytes
        now = time.time()
        samples = tuple(
            Sample(c, usages.get(c.id), now, self.cgroups.cgroup_id(c), layers.get(c.id))
            for c in containers
        )
        snapshot = Snapshot(
            samples=samples,
            machine=self._machine(filesystem),
            docker_up=self.watcher.docker_up,
            refresh_seconds=time.perf_counter() - started,
            taken_at=now,
            stats_api_containers=fallback,
        )
        self._note_peaks(samples)
        self.snapshot = snapshot
        if self.on_refresh is not None:
            self.on_refresh()
        return snapshot

    def _release_gone(self, containers: list[Container], running: list[Container]) -> None:
        """Close the files of stopped containers at once, and forget removed ones."""
        current_ids = {c.id for c in containers}
        running_ids = {c.id for c in running}
        stopped_ids = self._running_ids - running_ids
        for stopped in stopped_ids:
            self.cgroups.release(stopped)
        for gone in self._known_ids - current_ids:
            self.cgroups.forget(gone)
            self._fallback_logged.discard(gone)
        self._known_ids, self._running_ids = current_ids, running_ids

    def _note_peaks(self, samples: tuple[Sample, ...]) -> None:
        """Each running container's peak so far; the newest STOPPED_PEAKS stopped ones kept."""
        for sample in samples:
            peak = memory_peak_of(sample.usage) if sample.usage is not None else None
            if peak:
                container_id = sample.container.id
                self._peaks[container_id] = max(peak, self._peaks.get(container_id, 0))
                self._peaks.move_to_end(container_id)
        while len(self._peaks) > STOPPED_PEAKS + len(self._running_ids):
            self._peaks.popitem(last=False)

    def memory_peak(self, container_id: str) -> int | None:
        """The highest memory use sampled for a container, running or stopped since; None
        when never sampled running."""
        return self._peaks.get(container_id)

    def _machine(self, filesystem: FilesystemState) -> MachineSample | None:
        if self.proc_root is None:
            return None
        disks = self.cgroups.devices.stats()
        try:
            usage = root_usage(self.proc_root, disks)
        except (OSError, ValueError, IndexError) as exc:
            self.errors_total += 1
            log.warning("cannot read the host's usage from %s: %s", self.proc_root, exc)
            return None
        disk = disks.get(filesystem.device_number)
        return MachineSample(
            usage=usage,
            filesystem=filesystem.filesystem,
            filesystem_used_bytes=filesystem.used_bytes,
            io_current=disk.in_progress if disk is not None else 0,
        )

    def _read_usage(self, running: list[Container]) -> tuple[dict[str, Usage | None], int]:
        usages: dict[str, Usage | None] = {}
        unreadable: list[Container] = []
        for container in running:
            try:
                usage = self.cgroups.read(container)
            except CgroupGone:  # it stopped since Docker last said running: no usage, no API
                usages[container.id] = None
                continue
            if usage is None:
                unreadable.append(container)
            usages[container.id] = usage
        for container in unreadable:
            if container.id not in self._fallback_logged:
                self._fallback_logged.add(container.id)
                log.warning(
                    "container %s (%s): cgroup not found under %s; reading it through Docker's "
                    "stats API instead (one API call per refresh)",
                    container.name,
                    container.id[:12],
                    self.cgroups.root,
                )
        api = self.watcher.api
        if unreadable and api is not None and self.watcher.docker_up:
            usages.update(self.stats_api.read_many(api, unreadable))
        return usages, len(unreadable)
