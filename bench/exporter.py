"""Exporter benchmark: N idle containers on a private dockerd, the whole cycle against baselines.

Measured side by side in one run on the same N containers (busybox `sleep`, `--network none`):
- the exporter's whole cycle, from the start of a refresh until the new exposition is servable:
  read (Docker state + every cgroup) + render + gzip; in-process, steady state, median of 20;
- Docker's one-shot stats API for the same containers through a thread pool (the best a
  Docker-API exporter can do), median of 3;
- `docker stats --no-stream` over the same containers, median of 2;
- the real exporter process at a 5 s refresh while a Prometheus-like client scrapes it with gzip
  every 5 s: its CPU (% of one core) and RSS over `--duration` seconds, and those scrapes'
  latencies; then `--scrapes` gzip scrapes back to back (spanning several refreshes) for the
  p50/p99 a scrape sees while refreshes run.
The last line is the summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import docker
import requests

from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_exporter.stats_api import StatsApiReader
from dockpulse_stack.engine import Engine, start_private_dockerd
from dockpulse_stack.rootfs import busybox_image
from testkit.exporter import exporter_in_process
from testkit.local_stack import LocalStack

BENCH_LABEL = "dockpulse.bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STATE_DIR = Path("/tmp/dockpulse-bench-engine")
API_WORKERS = 32


def start_containers(engine: Engine, image: str, count: int, run_id: str) -> None:
    with closing(engine.client(timeout=120)) as client:

        def start(index: int) -> None:
            client.containers.run(
                image,
                ["sleep", "7200"],
                name=f"bench-{run_id}-{index}",
                detach=True,
                network_mode="none",
                labels={BENCH_LABEL: run_id},
            )

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(start, range(count)))


def remove_containers(engine: Engine, run_id: str) -> None:
    with closing(engine.client(timeout=600)) as client:
        containers = client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={run_id}"})
        for container in containers:  # one at a time: parallel removals stalled dockerd here
            container.remove(force=True)


@contextmanager
def idle_containers(state_dir: Path, count: int) -> Iterator[tuple[Engine, str]]:
    """A private dockerd in `state_dir` running `count` idle busybox containers of one run
    (engine, run id); the containers and the engine are gone afterwards."""
    print(f"starting a private dockerd in {state_dir}...", flush=True)
    engine = start_private_dockerd(state_dir)
    run_id = uuid.uuid4().hex[:8]
    try:
        image = busybox_image(engine)
        print(f"starting {count} idle containers...", flush=True)
        started = time.perf_counter()
        start_containers(engine, image, count, run_id)
        print(f"  started in {time.perf_counter() - started:.1f}s", flush=True)
        yield engine, run_id
    finally:
        try:
            remove_containers(engine, run_id)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            print(f"cleanup: {exc} (the engine is stopped anyway)", flush=True)
        engine.stop()


def time_cycle(engine: Engine, count: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of each phase of the whole cycle, and of the cycle itself."""
    with exporter_in_process(engine.host) as exporter:  # one full listing, as at start-up
        sampler, exposition = exporter.sampler, exporter.exposition
        sampler.refresh()  # locate cgroups once, as in steady state
        running = sum(1 for sample in sampler.snapshot.samples if sample.usage is not None)
        if running < count:
            raise SystemExit(f"only {running} of {count} containers had readable usage")
        phases: dict[str, list[float]] = {"read": [], "render": [], "compress": [], "cycle": []}
        for _ in range(repeats):
            started = time.perf_counter()
            snapshot = sampler.refresh()
            phases["cycle"].append(time.perf_counter() - started)
            phases["read"].append(snapshot.refresh_seconds)
            for phase, seconds in exposition.phase_seconds.items():
                phases[phase].append(seconds)
    return {phase: 1000 * statistics.median(values) for phase, values in phases.items()}


def time_stats_api(engine: Engine, run_id: str, repeats: int) -> float:
    """Median seconds for one-shot stats of every bench container through a thread pool."""
    watcher = DockerWatcher(engine.host, resync_interval=60, on_change=lambda: None)
    with closing(engine.client()) as client:
        watcher.resync(client.api)
        containers = [c for c in watcher.containers() if c.labels.get(BENCH_LABEL) == run_id]
        reader = StatsApiReader(workers=API_WORKERS)
        api = docker_api(engine)
        durations = []
        for _ in range(repeats):
            started = time.perf_counter()
            usages = reader.read_many(api, containers)
            durations.append(time.perf_counter() - started)
        reader.close()
    if sum(1 for usage in usages.values() if usage is not None) < len(containers):
        raise SystemExit("the stats API did not answer for every container")
    return statistics.median(durations)


def docker_api(engine: Engine) -> docker.APIClient:
    # One connection per pool worker, so the threads do not queue on the connection pool.
    return docker.APIClient(base_url=engine.host, timeout=120, max_pool_size=API_WORKERS)


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


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def gzip_scrape(session: requests.Session, url: str) -> float:
    """Seconds from sending a gzip scrape until its last (compressed) byte arrived; the
    client's own decompression and parsing are left out, as they are the scraper's cost."""
    started = time.perf_counter()
    response = session.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    response.raise_for_status()
    response.raw.read(decode_content=False)
    return time.perf_counter() - started


def measure_exporter_process(
    engine: Engine, count: int, duration: float, scrapes: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work_dir, LocalStack(Path(work_dir)) as stack:
        exporter = stack.exporter({"refresh_interval": "5s"}, docker_host=engine.host)
        url, pid = f"{exporter.url}/metrics", exporter.process.pid
        session = requests.Session()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = session.get(url, timeout=10).text
            if text.count("container_cpu_usage_seconds_total{") >= count:
                break
            time.sleep(0.5)
        time.sleep(6)  # past start-up and at least one steady refresh
        # Prometheus-like: a gzip scrape every 5 s, while CPU and RSS are sampled.
        periodic: list[float] = []
        stop = threading.Event()

        def scrape_every_5s() -> None:
            while not stop.wait(5.0):
                periodic.append(gzip_scrape(session, url))

        scraper = threading.Thread(target=scrape_every_5s, daemon=True)
        cpu_before, wall_before = process_cpu_seconds(pid), time.monotonic()
        scraper.start()
        time.sleep(duration)
        stop.set()
        scraper.join()
        cpu_percent = (
            100 * (process_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        )
        rss = process_rss_bytes(pid)
        # Back-to-back gzip scrapes, spanning several 5 s refreshes.
        latencies = []
        for _ in range(scrapes):
            latencies.append(gzip_scrape(session, url))
            time.sleep(0.05)
        raw = session.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
        wire_size = len(raw.raw.read())
        plain_size = len(session.get(url, headers={"Accept-Encoding": "identity"}).content)
        phases = {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in session.get(url).text.splitlines()
            if line.startswith("dockpulse_collect_phase_duration_seconds{")
        }
        return {
            "cpu_percent": cpu_percent,
            "rss_mb": rss / 2**20,
            "periodic_p50_ms": 1000 * percentile(periodic, 0.5) if periodic else float("nan"),
            "periodic_max_ms": 1000 * max(periodic) if periodic else float("nan"),
            "scrape_p50_ms": 1000 * percentile(latencies, 0.5),
            "scrape_p99_ms": 1000 * percentile(latencies, 0.99),
            "exposition_kb": plain_size / 1024,
            "gzip_kb": wire_size / 1024,
            "self_cycle_ms": 1000 * sum(phases.values()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of CPU/RSS sampling")
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="private dockerd's")
    args = parser.parse_args()

    with idle_containers(args.state_dir, args.containers) as (engine, run_id):
        cycle = time_cycle(engine, args.containers, repeats=20)
        print(
            f"whole cycle of {args.containers}: {cycle['cycle']:.1f} ms (read {cycle['read']:.1f}"
            f" + render {cycle['render']:.1f} + gzip {cycle['compress']:.1f}; medians of 20)",
            flush=True,
        )
        stats_api = time_stats_api(engine, run_id, repeats=3)
        print(f"one-shot stats API, {API_WORKERS} threads: {stats_api:.2f} s (median of 3)")
        docker_stats = time_docker_stats(engine, run_id, repeats=2)
        print(f"docker stats --no-stream: {docker_stats:.2f} s (median of 2)", flush=True)
        print(f"exporter process over {args.duration:.0f}s, 5 s refresh, gzip scrapes every 5 s")
        process = measure_exporter_process(engine, args.containers, args.duration, args.scrapes)
        cycle_s = cycle["cycle"] / 1000
        print(
            f"containers={args.containers} cycle_ms={cycle['cycle']:.1f} "
            f"read_ms={cycle['read']:.1f} render_ms={cycle['render']:.1f} "
            f"gzip_ms={cycle['compress']:.1f} self_metric_cycle_ms={process['self_cycle_ms']:.1f} "
            f"stats_api_s={stats_api:.2f} x_vs_stats_api={stats_api / cycle_s:.0f} "
            f"docker_stats_s={docker_stats:.2f} x_vs_docker_stats={docker_stats / cycle_s:.0f} "
            f"scrape_5s_p50_ms={process['periodic_p50_ms']:.1f} "
            f"scrape_5s_max_ms={process['periodic_max_ms']:.1f} "
            f"scrape_p50_ms={process['scrape_p50_ms']:.1f} "
            f"scrape_p99_ms={process['scrape_p99_ms']:.1f} "
            f"cpu_percent={process['cpu_percent']:.2f} rss_mb={process['rss_mb']:.1f} "
            f"exposition_kb={process['exposition_kb']:.0f} gzip_kb={process['gzip_kb']:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
