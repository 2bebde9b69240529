"""What `/metrics` serves, built in the background so a scrape only copies bytes.

The container part (almost all of it) is rendered and gzip-compressed by the sampler's thread
after each refresh, then swapped in as one immutable pair; a scrape meanwhile serves the previous
pair. The small rest (exporter health, probes, process) is rendered per scrape. gzip members
concatenate into one valid stream, so the two parts are compressed separately.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable

try:  # ISA-L's deflate is several times faster than zlib's at the same ratio (optional)
    from isal import isal_zlib as deflate
except ImportError:  # pragma: no cover - depends on the installation
    deflate = zlib  # type: ignore[assignment]

from prometheus_client import CollectorRegistry
from prometheus_client.utils import floatToGoString

from dockpulse_exporter.families import (
    Family,
    LineCache,
    escape_help,
    escape_label_value,
    render_by_family,
)

TYPE_NAMES = {"unknown": "untyped", "gaugehistogram": "histogram", "stateset": "gauge"}
GZIP_LEVEL = 1


def gzip_member(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """One gzip member (what gzip.compress makes, without its per-call overhead)."""
    compressor = deflate.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def render(registry: CollectorRegistry) -> bytes:
    """Every metric in a (small) registry as text exposition format, as generate_latest."""
    lines: list[str] = []
    for metric in registry.collect():
        name = metric.name + "_total" if metric.type == "counter" else metric.name
        kind = TYPE_NAMES.get(metric.type, metric.type)
        if metric.type == "info":
            name, kind = metric.name + "_info", "gauge"
        lines.append(f"# HELP {name} {escape_help(metric.documentation)}\n# TYPE {name} {kind}\n")
        for sample in metric.samples:
            labels = ",".join(
                f'{k}="{escape_label_value(v)}"' for k, v in sorted(sample.labels.items())
            )
            labels = "{" + labels + "}" if labels else ""
            lines.append(f"{sample.name}{labels} {floatToGoString(sample.value)}\n")
    return "".join(lines).encode()


class Exposition:
    """What a scrape sends, kept ready: the container part is swapped in whole by
    `update_containers`, the small rest by `update_rest`; `body` only copies references.

    Only the gzip form of the container part is kept (Prometheus always asks for gzip); a
    scrape without gzip gets it decompressed.
    """

    def __init__(self, containers: Callable[[], list[Family]], rest: CollectorRegistry) -> None:
        self._containers = containers
        self._rest = rest
        self._lines = LineCache()
        self._container_gzip = gzip_member(b"")
        self._rest_body = (b"", gzip_member(b""))
        self.phase_seconds: dict[str, float] = {"render": 0.0, "compress": 0.0}

    def update_containers(self) -> None:
        """Render and compress the container part; called by the sampler after every refresh.

        Each family is compressed as soon as it is rendered, so the whole uncompressed text
        (10 MB at 1000 containers) is never held at once."""
        clock = time.perf_counter
        compressor = deflate.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        compressed: list[bytes] = []
        seconds = {"render": 0.0, "compress": 0.0}
        started = clock()
        for chunk in render_by_family(self._containers(), self._lines):
            rendered = clock()
            compressed.append(compressor.compress(chunk))
            seconds["render"] += rendered - started
            started = clock()
            seconds["compress"] += started - rendered
        compressed.append(compressor.flush())
        self._container_gzip = b"".join(compressed)  # one reference swap: atomic
        seconds["compress"] += clock() - started
        self.phase_seconds = seconds
        self.update_rest()

    def update_rest(self) -> None:
        """Render the rest (exporter health, probes, process); after every refresh and every
        second from its own thread."""
        rest = render(self._rest)
        self._rest_body = (rest, gzip_member(rest))

    def keep_rest_fresh(self, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            self.update_rest()

    def body(self, gzipped: bool = False) -> list[bytes]:
        """The response body as chunks to write in order."""
        rest, rest_gzip = self._rest_body
        if gzipped:
            return [rest_gzip, self._container_gzip]
        return [rest, gzip.decompress(self._container_gzip)]
