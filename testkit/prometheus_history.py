"""A real Prometheus that already holds an hour of made-up history (tests and benches).

The series are written as OpenMetrics and turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics` in the data folder before Prometheus starts, so
`query_range` over the past hour answers at once, without waiting for scrapes.

    history = {'container_up{instance="h:1",name="web"}': [(t0, 1.0), (t0 + 15, 0.0)]}
    prometheus = prometheus_with_history(stack, history)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from testkit.local_stack import LocalStack, LocalStackError, Service, binary

Points = Iterable[tuple[float, float]]


def openmetrics(history: Mapping[str, Points]) -> str:
    """The exposition of `history` (series text -> (unix seconds, value)), gauges only."""
    names = sorted({series.split("{", 1)[0] for series in history})
    # OpenMetrics wants each metric family in one block: group the samples by name.
    blocks: dict[str, list[str]] = {name: [] for name in names}
    for series, points in history.items():
        blocks[series.split("{", 1)[0]] += [
            f"{series} {value!r} {stamp:.3f}" for stamp, value in points
        ]
    lines = []
    for name in names:
        lines.append(f"# TYPE {name} gauge")
        lines += blocks[name]
    return "\n".join([*lines, "# EOF", ""])


def backfill(data_dir: Path, history: Mapping[str, Points]) -> None:
    """Write `history` as TSDB blocks into `data_dir` (Prometheus' --storage.tsdb.path)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / "history.om"
    source.write_text(openmetrics(history))
    result = subprocess.run(
        [
            binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(source),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise LocalStackError(f"promtool backfill failed:\n{result.stdout}{result.stderr}")


def prometheus_with_history(
    stack: LocalStack, history: Mapping[str, Points], name: str = "prometheus"
) -> Service:
    """A Prometheus of `stack` (scraping nothing) that starts with `history` in its TSDB."""
    backfill(stack.folder(name) / "data", history)
    return stack.prometheus({"global": {"scrape_interval": "15s"}, "scrape_configs": []}, name)
