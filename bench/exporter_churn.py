"""Exporter churn: containers created and removed over time on a private dockerd.

In waves of `--wave` containers (busybox `sleep`, `--network none`), `--total` containers in
all: each wave is started, seen by the exporter, half of it stopped (its descriptors must close
at the stop), then all removed. After every wave the exporter's open descriptors and RSS are
sampled; at the end no series may remain for any removed container. The last line is the
summary: descriptors and RSS after the first and the last wave, and the stale series found.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import requests

from bench.exporter import process_rss_bytes
from dockpulse_stack.engine import start_private_dockerd
from dockpulse_stack.rootfs import busybox_image
from testkit.local_stack import LocalStack

STATE_DIR = Path("/tmp/dockpulse-churn-engine")


def series_container_ids(url: str) -> set[str]:
    """Container ids in the `id` labels of a scrape (cgroup paths end in the id)."""
    ids = set()
    for line in requests.get(url, timeout=30).text.splitlines():
        start = line.find('id="')
        if start < 0 or line.startswith("#"):
            continue
        cgroup = line[start + 4 : line.index('"', start + 4)]
        ids.add(cgroup.rsplit("/", 1)[-1].removeprefix("docker-").removesuffix(".scope"))
    return ids


def wait_for(check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the exporter")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1000)
    parser.add_argument("--wave", type=int, default=100)
    args = parser.parse_args()

    engine = start_private_dockerd(STATE_DIR)
    run_id = uuid.uuid4().hex[:8]
    samples: list[tuple[int, int, float]] = []  # (containers so far, fds, RSS MB)
    removed: set[str] = set()
    try:
        image = busybox_image(engine)
        with (
            tempfile.TemporaryDirectory() as work_dir,
            LocalStack(Path(work_dir)) as stack,
            closing(engine.client(timeout=120)) as client,
            ThreadPoolExecutor(max_workers=6) as pool,
        ):
            exporter = stack.exporter({"refresh_interval": "1s"}, docker_host=engine.host)
            url, pid = f"{exporter.url}/metrics", exporter.process.pid
            for wave_start in range(0, args.total, args.wave):

                def run(index: int) -> object:
                    return client.containers.run(
                        image,
                        ["sleep", "3600"],
                        name=f"churn-{run_id}-{index}",
                        detach=True,
                        network_mode="none",
                    )

                count = min(args.wave, args.total - wave_start)
                wave = list(pool.map(run, range(wave_start, wave_start + count)))
                ids = {c.id for c in wave}
                wait_for(lambda ids=ids: ids <= series_container_ids(url))
                for container in wave[: count // 2]:
                    container.stop(timeout=1)
                for container in wave:  # one at a time: parallel removals stalled dockerd
                    container.remove(force=True)
                removed |= ids
                wait_for(lambda ids=ids: not (ids & series_container_ids(url)))
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                rss = process_rss_bytes(pid) / 2**20
                samples.append((wave_start + count, fds, rss))
                print(f"after {wave_start + count} containers: fds={fds} rss_mb={rss:.1f}")
            stale = removed & series_container_ids(url)
    finally:
        engine.stop()
    first, last = samples[0], samples[-1]
    print(
        f"churn total={args.total} wave={args.wave} fds_first={first[1]} fds_last={last[1]} "
        f"rss_first_mb={first[2]:.1f} rss_last_mb={last[2]:.1f} "
        f"rss_max_mb={max(s[2] for s in samples):.1f} stale_series_containers={len(stale)}"
    )


if __name__ == "__main__":
    main()
