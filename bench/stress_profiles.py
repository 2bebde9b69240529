"""What each load profile does to the demo app, side by side in one run.

The webapp runs in its container (`dockpulse/webapp:local`, --network host) on a throwaway
PostgreSQL on the host; the real exporter watches the container; each profile runs headless for
`--duration` seconds. Per profile: the container's CPU (% of one core, from
container_cpu_usage_seconds_total), its memory (mean and peak container_memory_usage_bytes), the
PostgreSQL server's CPU, and Locust's request rate, failures and p50/p95 latency.

    .venv/bin/python bench/stress_profiles.py [--duration 25] [--profiles normal spike]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from dockpulse_stack.engine import find_or_start_engine
from testkit.helpers import free_port
from testkit.local_stack import LocalStack
from testkit.postgres import PostgresServer
from testkit.webapp_container import WebappContainer, webapp_image

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROFILES = ("normal", "cpu-intensive", "memory-intensive", "db-intensive", "spike", "extreme")
MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def container_sample(metrics_url: str, name: str) -> tuple[float, float]:
    """(CPU seconds, memory bytes) of the container `name` from the exporter."""
    cpu = memory = None
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=5).text):
        for sample in family.samples:
            if sample.labels.get("name") != name:
                continue
            if sample.name == "container_cpu_usage_seconds_total":
                cpu = sample.value
            elif sample.name == "container_memory_usage_bytes":
                memory = sample.value
    if cpu is None or memory is None:
        raise RuntimeError(f"the exporter does not report container {name} yet")
    return cpu, memory


def postgres_cpu_seconds(server: PostgresServer) -> float:
    """CPU of the postmaster and its backends (live ones, and reaped ones via cutime)."""
    assert server.process is not None
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, pgid = int(stat.parent.name), int(fields[2])
        if pgid == server.process.pid:
            total += int(fields[11]) + int(fields[12])  # utime + stime
            if pid == server.process.pid:
                total += int(fields[13]) + int(fields[14])  # cutime + cstime
    return total / CLOCK_TICKS


def measure(
    profile: str | None,
    duration: float,
    app: tuple[str, str],
    metrics_url: str,
    postgres: PostgresServer,
    out_dir: Path,
) -> dict[str, float | str]:
    """Run one profile (None: idle) and measure the container while it runs."""
    name, url = app
    time.sleep(1.5)  # let the exporter's counters settle after the previous run
    cpu_start, _ = container_sample(metrics_url, name)
    pg_start, started = postgres_cpu_seconds(postgres), time.monotonic()
    locust = None
    if profile is not None:
        locust = subprocess.Popen(
            [
                str(BIN / "locust"),
                *("-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless"),
                *("--only-summary", "--run-time", f"{duration:.0f}s", "--stop-timeout", "10"),
                *("--host", url, "--csv", str(out_dir / profile)),
            ],
            env={**os.environ, "STRESS_LEVEL": profile, "LOADTEST_METRICS_PORT": str(free_port())},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    memory: list[float] = []
    while time.monotonic() - started < duration:
        memory.append(container_sample(metrics_url, name)[1])
        time.sleep(1)
    cpu_end, _ = container_sample(metrics_url, name)
    elapsed = time.monotonic() - started
    pg_cpu = postgres_cpu_seconds(postgres) - pg_start
    result: dict[str, float | str] = {
        "profile": profile or "(idle)",
        "cpu_percent": 100 * (cpu_end - cpu_start) / elapsed,
        "memory_mean_mib": sum(memory) / len(memory) / MIB,
        "memory_peak_mib": max(memory) / MIB,
        "postgres_cpu_percent": 100 * pg_cpu / elapsed,
    }
    if locust is not None:
        locust.wait(timeout=60)
        with open(out_dir / f"{profile}_stats.csv", newline="") as handle:
            total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
        requests_count = int(total["Request Count"])
        result.update(
            requests_per_second=float(total["Requests/s"]),
            failure_percent=100 * int(total["Failure Count"]) / max(requests_count, 1),
            p50_ms=float(total["50%"]),
            p95_ms=float(total["95%"]),
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=25.0, help="seconds per profile")
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES))
    args = parser.parse_args()
    engine = find_or_start_engine()
    image = webapp_image(engine)
    rows = []
    with (
        tempfile.TemporaryDirectory() as out_dir,
        PostgresServer() as postgres,
        LocalStack(Path(out_dir)) as local,
        ExitStack() as cleanup,
    ):
        webapp = WebappContainer(
            engine, f"bench-webapp-{uuid.uuid4().hex[:8]}", postgres.url(), compose_service=None
        )
        cleanup.callback(webapp.remove)
        app = (webapp.run(image, timeout=30).name, webapp.url)
        exporter = local.exporter({"refresh_interval": "1s"}, docker_host=engine.host)
        metrics_url = f"{exporter.url}/metrics"
        wait_for_container = time.monotonic() + 30
        while True:
            try:
                container_sample(metrics_url, app[0])
                break
            except RuntimeError:
                if time.monotonic() > wait_for_container:
                    raise
                time.sleep(0.5)
        for profile in [None, *args.profiles]:
            duration = 10.0 if profile is None else args.duration
            rows.append(measure(profile, duration, app, metrics_url, postgres, Path(out_dir)))
            print(format_row(rows[-1]), file=sys.stderr, flush=True)
    print(HEADER)
    for row in rows:
        print(format_row(row))
    worst = max(rows[1:], key=lambda row: float(row["cpu_percent"]))
    print(
        f"summary: {len(rows) - 1} profiles x {args.duration:.0f}s; busiest {worst['profile']}: "
        f"CPU {float(worst['cpu_percent']):.0f}%, peak memory "
        f"{max(float(row['memory_peak_mib']) for row in rows):.0f} MiB, "
        f"idle CPU {float(rows[0]['cpu_percent']):.1f}%"
    )
    return 0


HEADER = (
    f"{'profile':<17} {'CPU %':>6} {'mem MiB':>8} {'peak MiB':>9} {'PG CPU %':>9} "
    f"{'req/s':>6} {'fail %':>7} {'p50 ms':>7} {'p95 ms':>7}"
)


def format_row(row: dict[str, float | str]) -> str:
    def number(key: str, width: int) -> str:
        return f"{float(row[key]):>{width}.0f}" if key in row else f"{'-':>{width}}"

    return (
        f"{row['profile']:<17} {number('cpu_percent', 6)} {number('memory_mean_mib', 8)} "
        f"{number('memory_peak_mib', 9)} {number('postgres_cpu_percent', 9)} "
        f"{float(row.get('requests_per_second', 0)):>6.1f} "
        f"{float(row.get('failure_percent', 0)):>7.1f} {number('p50_ms', 7)} {number('p95_ms', 7)}"
    )


if __name__ == "__main__":
    sys.exit(main())
