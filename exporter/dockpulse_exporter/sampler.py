"""The background refresh: containers from the watcher, usage from cgroups, one Snapshot."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dockpulse_exporter.cgroups import CgroupReader
from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_exporter.model import Container, Sample, Snapshot, Usage
from dockpulse_exporter.stats_api import StatsApiReader

log = logging.getLogger(__name__)

EVENT_SETTLE_SECONDS = 0.5


class Sampler:
    """Refreshes every `interval`, and at once when Docker reports a change."""

    def __init__(
        self,
        watcher: DockerWatcher,
        cgroups: CgroupReader,
        interval: float,
        stats_api: StatsApiReader | None = None,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self.watcher = watcher
        self.cgroups = cgroups
        self.interval = interval
        self.stats_api = stats_api or StatsApiReader()
        self.on_refresh = on_refresh
        self.snapshot = Snapshot()
        self.errors_total = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._known_ids: set[str] = set()

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
        usages = self._read_usage([c for c in containers if c.running])
        now = time.time()
        samples = tuple(Sample(c, usages.get(c.id), now) for c in containers)
        current_ids = {c.id for c in containers}
        for gone in self._known_ids - current_ids:
            self.cgroups.forget(gone)
        self._known_ids = current_ids
        snapshot = Snapshot(
            samples=samples,
            docker_up=self.watcher.docker_up,
            refresh_seconds=time.perf_counter() - started,
            taken_at=now,
        )
        self.snapshot = snapshot
        if self.on_refresh is not None:
            self.on_refresh()
        return snapshot

    def _read_usage(self, running: list[Container]) -> dict[str, Usage | None]:
        usages: dict[str, Usage | None] = {}
        unreadable: list[Container] = []
        for container in running:
            usage = self.cgroups.read(container)
            if usage is None:
                unreadable.append(container)
            usages[container.id] = usage
        api = self.watcher.api
        if unreadable and api is not None and self.watcher.docker_up:
            usages.update(self.stats_api.read_many(api, unreadable))
        return usages
