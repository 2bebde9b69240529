"""HTTP health probes, each on its own schedule in its own thread; never inside a scrape."""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from dockpulse_exporter.config import Probe

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class ProbeResult:
    """The latest outcome of one probe plus its latency histogram."""

    probe: Probe
    success: bool = False
    duration_seconds: float = 0.0
    status_code: int = 0
    runs: int = 0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0

    def record(self, success: bool, duration: float, status_code: int) -> None:
        self.success, self.duration_seconds, self.status_code = success, duration, status_code
        self.runs += 1
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, duration)] += 1
        self.latency_sum += duration

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        running, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.bucket_counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


def probe_once(probe: Probe) -> tuple[bool, float, int]:
    """(success, duration in seconds, HTTP status or 0 when no answer).

    Each run opens a new connection in a session of its own, closed afterwards, as
    blackbox_exporter does: a kept-alive connection would hide a listener that no longer accepts,
    and the duration includes the connect time every new client pays.
    """
    started = time.perf_counter()
    try:
        with requests.Session() as session:
            response = session.get(str(probe.url), timeout=probe.timeout, allow_redirects=True)
            status = response.status_code
    except requests.RequestException:
        status = 0
    duration = time.perf_counter() - started
    return status in probe.expected_status, duration, status


class ProbeRunner:
    """Runs every configured probe on its interval; `results()` is what scrapes read."""

    def __init__(self, probes: list[Probe], on_result: Callable[[], None] = lambda: None) -> None:
        self.on_result = on_result  # called after every probe run (re-renders the exposition)
        self._results = {probe.name: ProbeResult(probe) for probe in probes}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._loop, args=(probe,), name=f"probe-{probe.name}", daemon=True
            )
            for probe in probes
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def results(self) -> list[ProbeResult]:
        with self._lock:
            return [
                dataclasses.replace(r, bucket_counts=list(r.bucket_counts))
                for r in self._results.values()
                if r.runs > 0
            ]

    def _loop(self, probe: Probe) -> None:
        next_run = time.monotonic()
        while not self._stop.is_set():
            success, duration, status = probe_once(probe)
            with self._lock:
                self._results[probe.name].record(success, duration, status)
            self.on_result()
            next_run += probe.interval
            self._stop.wait(max(next_run - time.monotonic(), 0.0))
