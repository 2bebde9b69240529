"""Probes from Docker labels at scale: `--probes` containers (busybox `sleep`, host network) on
a private dockerd, each labelled `dockpulse.probe.port` + `dockpulse.probe.path`, all on one
local HTTP server (a separate process, so its CPU is not counted), probed every 5 s.

One run, three windows of `--window` seconds on the same containers and targets:
1. the exporter with `label_probes: false` (its baseline: watching and reading the containers);
2. the exporter with `label_probes: true` (the default): discovery time (exporter start until
   every probe has succeeded once), CPU, threads, open sockets, runs per probe per interval
   (1.00 = on schedule) and the probes' own latency;
3. blackbox_exporter probing the same targets the way Prometheus would (every 5 s, spread over
   the interval), its CPU and its probe_duration_seconds.
The last line is the summary.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path

import docker
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.probes import serve
from dockpulse_stack.engine import start_private_dockerd
from dockpulse_stack.rootfs import busybox_image
from testkit.helpers import free_port, scrape, values, wait_until
from testkit.local_stack import LocalStack

INTERVAL = 5.0
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH_LABEL = "dockpulse.bench"


def remove_containers(client: docker.DockerClient) -> None:
    """The bench's containers, one at a time (parallel removals stall dockerd)."""
    for container in client.containers.list(all=True, filters={"label": BENCH_LABEL}):
        container.remove(force=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def threads_and_sockets(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(status.split("Threads:")[1].split()[0])
    sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with suppress(OSError):  # closed meanwhile
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return threads, sockets


def watch(pid: int, window: float, during=lambda: None) -> dict[str, float]:
    """CPU share of one core over `window`, and the most threads and sockets seen (sampled
    every 0.5 s); `during()` is called at each sample."""
    started, cpu_started = time.monotonic(), cpu_seconds(pid)
    most_threads = most_sockets = 0
    while time.monotonic() - started < window:
        threads, sockets = threads_and_sockets(pid)
        most_threads, most_sockets = max(most_threads, threads), max(most_sockets, sockets)
        during()
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    return {
        "cpu_percent": (cpu_seconds(pid) - cpu_started) / elapsed * 100,
        "threads": most_threads,
        "sockets": most_sockets,
    }


def probe_counts(url: str) -> tuple[float, float, float]:
    """(when the exporter answered, probe runs so far, their summed seconds)."""
    text = requests.get(url, timeout=30).text
    answered = time.monotonic()  # before parsing: that takes a while on a loaded machine
    samples = [
        (sample.name, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    return (
        answered,
        sum(v for name, v in samples if name == "dockpulse_probe_latency_seconds_count"),
        sum(v for name, v in samples if name == "dockpulse_probe_latency_seconds_sum"),
    )


def measure_exporter(
    stack: LocalStack, engine_host: str, probes: int, window: float, label_probes: bool
) -> dict[str, float]:
    started = time.monotonic()
    exporter = stack.exporter(
        {"refresh_interval": "5s", "label_probes": label_probes},
        name=f"exporter-{label_probes}",
        docker_host=engine_host,
    )
    url = f"{exporter.url}/metrics"
    result: dict[str, float] = {}
    if label_probes:
        wait_until(
            lambda: sum(values(scrape(url), "probe_success")) == probes, timeout=120, interval=0.2
        )
        result["discovery_s"] = time.monotonic() - started
        # Every probe's first run is at once, its second one interval plus its phase later
        # (ProbeRunner); measured before that, runs per interval read low and the durations
        # still hold the first runs' (200 connects at once to one server: SYN retries, ~1 s).
        time.sleep(2 * INTERVAL)
    else:
        wait_until(lambda: len(values(scrape(url), "container_up")) >= probes, timeout=120)
    time_before, runs_before, seconds_before = probe_counts(url)
    durations: list[float] = []
    ticks = iter(range(10**9))

    def sample_durations() -> None:
        if label_probes and next(ticks) % 10 == 0:  # one scrape per interval
            durations.extend(values(scrape(url), "probe_duration_seconds"))

    result |= watch(exporter.process.pid, window, sample_durations)
    if label_probes:
        time_after, runs_after, seconds_after = probe_counts(url)
        runs = runs_after - runs_before
        result["runs_per_interval"] = runs / probes / ((time_after - time_before) / INTERVAL)
        result["mean_ms"] = (seconds_after - seconds_before) / runs * 1e3
        result["p50_ms"] = statistics.median(durations) * 1e3
        result["p99_ms"] = statistics.quantiles(durations, n=100)[98] * 1e3
    exporter.stop()
    return result


def measure_blackbox(work_dir: Path, targets: list[str], window: float) -> dict[str, float]:
    config = work_dir / "blackbox.yml"
    config.write_text("modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [BLACKBOX, f"--config.file={config}", f"--web.listen-address={address}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    durations: list[float] = []
    session = requests.Session()  # the scraper's keep-alive, as Prometheus'; probes are fresh

    def probe(target: str) -> None:
        answer = session.get(
            f"http://{address}/probe", params={"module": "http_2xx", "target": target}, timeout=5
        )
        for family in text_string_to_metric_families(answer.text):
            if family.name == "probe_duration_seconds":
                durations.append(family.samples[0].value)

    try:
        wait_until(lambda: requests.get(f"http://{address}/", timeout=1).ok, timeout=10)
        with ThreadPoolExecutor(max_workers=16) as pool:

            def scrape_cycle() -> None:  # like Prometheus: each target once per interval, spread
                step = INTERVAL / len(targets)
                for index, target in enumerate(targets):
                    pool.submit(probe, target)
                    time.sleep(step * 10 if index % 10 == 9 else 0)

            cycles = ThreadPoolExecutor(max_workers=1)
            stop_at = time.monotonic() + window

            def drive() -> None:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    scrape_cycle()
                    time.sleep(max(INTERVAL - (time.monotonic() - started), 0))

            driver = cycles.submit(drive)
            result = watch(process.pid, window)
            driver.result()
            cycles.shutdown()
    finally:
        process.terminate()
        process.wait(timeout=10)
    result["p50_ms"] = statistics.median(durations) * 1e3
    result["p99_ms"] = statistics.quantiles(durations, n=100)[98] * 1e3
    result["mean_ms"] = statistics.fmean(durations) * 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per measurement")
    args = parser.parse_args()
    state_dir = Path(os.environ.get("DOCKPULSE_ENGINE_DIR", "/tmp/dockpulse-bench-engine"))
    engine = start_private_dockerd(state_dir)
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port, None), daemon=True)
    server.start()
    run_id = uuid.uuid4().hex[:8]
    try:
        image = busybox_image(engine)
        with (
            tempfile.TemporaryDirectory() as work_dir,
            LocalStack(Path(work_dir)) as stack,
            closing(engine.client(timeout=120)) as client,
            ThreadPoolExecutor(max_workers=4) as pool,
        ):

            def run(index: int) -> object:
                return client.containers.run(
                    image,
                    ["sleep", "3600"],
                    name=f"probed-{run_id}-{index}",
                    detach=True,
                    network_mode="host",
                    labels={
                        BENCH_LABEL: run_id,
                        "dockpulse.probe.port": str(port),
                        "dockpulse.probe.path": f"/c/{index}",
                    },
                )

            remove_containers(client)  # an earlier run's, on this engine: they are probed too

            started = time.monotonic()
            list(pool.map(run, range(args.probes)))
            print(
                f"{args.probes} labelled containers started in {time.monotonic() - started:.0f} s"
            )
            baseline = measure_exporter(stack, engine.host, args.probes, args.window, False)
            print(f"exporter without label probes: {baseline}")
            probed = measure_exporter(stack, engine.host, args.probes, args.window, True)
            print(f"exporter with {args.probes} label probes: {probed}")
            targets = [f"http://127.0.0.1:{port}/c/{i}" for i in range(args.probes)]
            blackbox = measure_blackbox(Path(work_dir), targets, args.window)
            print(f"blackbox_exporter on the same {args.probes} targets: {blackbox}")
            remove_containers(client)
    finally:
        server.terminate()
        engine.stop()
    print(
        f"SUMMARY {args.probes} label probes every {INTERVAL:.0f} s, {args.window:.0f} s windows: "
        f"discovery {probed['discovery_s']:.1f} s; "
        f"runs/probe/interval {probed['runs_per_interval']:.2f}; "
        f"exporter CPU {probed['cpu_percent']:.1f} % of a core "
        f"(without probes {baseline['cpu_percent']:.1f} %), "
        f"threads {probed['threads']:.0f} (without {baseline['threads']:.0f}), "
        f"sockets {probed['sockets']:.0f} (without {baseline['sockets']:.0f}); "
        f"probe p50/p99 {probed['p50_ms']:.2f}/{probed['p99_ms']:.2f} ms "
        f"(mean {probed['mean_ms']:.2f}); "
        f"blackbox_exporter CPU {blackbox['cpu_percent']:.1f} %, "
        f"p50/p99 {blackbox['p50_ms']:.2f}/{blackbox['p99_ms']:.2f} ms "
        f"(mean {blackbox['mean_ms']:.2f})"
    )


if __name__ == "__main__":
    main()
