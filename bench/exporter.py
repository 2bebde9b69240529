"""Exporter benchmark: N idle containers; refresh time vs `docker stats`, scrape latency, cost.

Measured side by side in one run on the same containers:
- one full background refresh of all N (in-process, steady state, median of repeats),
- `docker stats --no-stream` over the same N,
- `/metrics` scrape latency (p50/p99) against the real exporter process,
- that process's CPU (% of one core) and RSS over `--duration` seconds at a 5 s refresh.
The last line is the summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import requests

from dockpulse_exporter.cgroups import CgroupReader
from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_exporter.sampler import Sampler
from dockpulse_stack.engine import Engine, find_or_start_engine
from dockpulse_stack.rootfs import busybox_image
from tests.support.local_stack import LocalStack

BENCH_LABEL = "dockpulse.bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start_containers(engine: Engine, image: str, count: int, run_id: str) -> None:
    with closing(engine.client()) as client:

        def start(index: int) -> None:
            client.containers.run(
                image,
                ["sleep", "3600"],
                name=f"bench-{run_id}-{index}",
                detach=True,
                network_mode="none",
                labels={BENCH_LABEL: run_id},
            )

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(start, range(count)))


def remove_containers(engine: Engine, run_id: str) -> None:
    with closing(engine.client()) as client:
        containers = client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={run_id}"})
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda c: c.remove(force=True), containers))


def time_refresh(engine: Engine, count: int, repeats: int) -> float:
    """Median seconds of one full refresh (cgroup reads for every running container)."""
    watcher = DockerWatcher(engine.host, resync_interval=60, on_change=lambda: None)
    with closing(engine.client()) as client:
        watcher.resync(client.api)  # one full listing, as at start-up
    sampler = Sampler(watcher, CgroupReader(Path("/sys/fs/cgroup"), Path("/proc")), interval=5)
    sampler.refresh()  # locate cgroups once, as in steady state
    running = sum(1 for sample in sampler.snapshot.samples if sample.usage is not None)
    if running < count:
        raise SystemExit(f"only {running} of {count} containers had readable usage")
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        sampler.refresh()
        durations.append(time.perf_counter() - started)
    sampler.stop()
    return statistics.median(durations)


def time_docker_stats(engine: Engine, run_id: str, repeats: int) -> float:
    names = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label={BENCH_LABEL}={run_id}"],
        env=engine.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            ["docker", "stats", "--no-stream", *names],
            env=engine.env(),
            capture_output=True,
            check=True,
        )
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure_exporter_process(engine: Engine, duration: float, scrapes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work_dir, LocalStack(Path(work_dir)) as stack:
        exporter = stack.exporter({"refresh_interval": "5s"}, docker_host=engine.host)
        url, pid = f"{exporter.url}/metrics", exporter.process.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if b"container_cpu_usage_seconds_total{" in requests.get(url, timeout=2).content:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        time.sleep(6)  # past start-up and at least one steady refresh
        cpu_before, wall_before = process_cpu_seconds(pid), time.monotonic()
        time.sleep(duration)
        cpu_percent = (
            100 * (process_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        )
        rss = process_rss_bytes(pid)
        session = requests.Session()
        latencies, size = [], 0
        for _ in range(scrapes):
            started = time.perf_counter()
            size = len(session.get(url, timeout=5).content)
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        return {
            "cpu_percent": cpu_percent,
            "rss_mb": rss / 2**20,
            "scrape_p50_ms": 1000 * latencies[len(latencies) // 2],
            "scrape_p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
            "exposition_kb": size / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of CPU/RSS sampling")
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()

    engine = find_or_start_engine()
    image = busybox_image(engine)
    run_id = uuid.uuid4().hex[:8]
    print(f"starting {args.containers} idle containers...", flush=True)
    started = time.perf_counter()
    start_containers(engine, image, args.containers, run_id)
    print(f"  started in {time.perf_counter() - started:.1f}s", flush=True)
    try:
        refresh = time_refresh(engine, args.containers, repeats=20)
        print(f"full refresh of {args.containers}: {1000 * refresh:.1f} ms (median of 20)")
        docker_stats = time_docker_stats(engine, run_id, repeats=2)
        print(f"docker stats --no-stream on the same: {docker_stats:.2f} s (median of 2)")
        print(f"exporter process over {args.duration:.0f}s at a 5 s refresh...", flush=True)
        process = measure_exporter_process(engine, args.duration, args.scrapes)
    finally:
        remove_containers(engine, run_id)
        engine.stop()
    print(
        f"containers={args.containers} refresh_ms={1000 * refresh:.1f} "
        f"docker_stats_s={docker_stats:.2f} ratio_vs_docker_stats={docker_stats / refresh:.0f} "
        f"scrape_p50_ms={process['scrape_p50_ms']:.1f} "
        f"scrape_p99_ms={process['scrape_p99_ms']:.1f} "
        f"cpu_percent={process['cpu_percent']:.2f} rss_mb={process['rss_mb']:.1f} "
        f"exposition_kb={process['exposition_kb']:.0f}"
    )


if __name__ == "__main__":
    main()
