"""Fixtures for the load tests: the real webapp on a real PostgreSQL, and Locust runs.

Locust is only ever run as a subprocess: importing it here would monkey-patch (gevent) the
whole test session.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from testkit.helpers import Samples, free_port, scrape, wait_until
from testkit.postgres import PostgresServer
from tests.webapp.process import webapp_process

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"
LAUNCHER = Path(sys.executable).parent / "dockpulse-loadtest"


@pytest.fixture(scope="session")
def loadtest_webapp() -> Iterator[str]:
    """The app with its default caps but two stress slots, so runs stay light on the host."""
    with (
        PostgresServer() as postgres,
        webapp_process(postgres.url(), workers="2", threads="8", max_concurrent_stress="2") as url,
    ):
        yield url


@dataclass
class LocustRun:
    """One headless Locust run: its process, CSV prefix and metrics URL."""

    profile: str
    process: subprocess.Popen[str]
    csv_prefix: Path
    metrics_url: str
    samples: Samples = field(default_factory=list)  # a scrape taken while it ran
    output: str = ""  # what Locust printed
    web_url: str | None = None  # the web UI's, when it runs with one

    def stats(self) -> dict[str, dict[str, str]]:
        """Rows of `<prefix>_stats.csv` by request name ("Aggregated" for the total)."""
        with open(f"{self.csv_prefix}_stats.csv", newline="") as handle:
            return {row["Name"]: row for row in csv.DictReader(handle)}

    def requests_made(self) -> Counter[str]:
        """Requests made so far by request name, as the (master's) metrics count them."""
        counts: Counter[str] = Counter()
        for name, labels, number in scrape(self.metrics_url):
            if name == "dockpulse_loadtest_requests_total":
                counts[labels["name"]] += int(number)
        return counts

    def stop_users(self) -> None:
        """End the run from the web UI (its users finish their requests); Locust stays up."""
        assert self.web_url, "started without a web UI"
        requests.post(f"{self.web_url}/stop", timeout=10).raise_for_status()

    def quit(self, timeout: float = 30.0) -> str:
        """Stop Locust as Ctrl-C does (a master takes its workers with it); what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        self.output += output or ""
        return self.output


def webapp_requests(webapp_url: str) -> Counter[str]:
    """Requests the webapp answered so far, by endpoint (every method and status)."""
    counts: Counter[str] = Counter()
    for name, labels, number in scrape(f"{webapp_url}/metrics"):
        if name == "dockpulse_webapp_requests_total":
            counts[labels["endpoint"]] += int(number)
    return counts


def start_locust(
    profile: str,
    host: str,
    out_dir: Path,
    run_time: str = "8s",
    metrics_port: int | None = None,
    workers: int = 0,
    web_port: int | None = None,
    **env: str,
) -> LocustRun:
    """Locust running `profile` against `host`, its metrics on `metrics_port` (default: free);
    with `workers`, a master and that many workers (`dockpulse-loadtest`), the master's metrics.
    Headless with a CSV, or with `web_port` started at once with its web UI there, which can
    end the run (`LocustRun.stop_users`) and keeps the process up until it is stopped (no CSV:
    Locust's CSV writer fails on a closed file when such a process quits)."""
    port = metrics_port or free_port()
    prefix = out_dir / profile
    mode = ["--headless", "--csv", str(prefix)]
    if web_port:
        mode = ["--autostart", "--web-host", "127.0.0.1", "--web-port", str(web_port)]
    if workers:
        env = {
            "LOADTEST_WORKERS": str(workers),
            "LOCUST_LOCUSTFILE": str(LOCUSTFILE),  # the workers' too
            "LOCUST_MASTER_BIND_PORT": str(free_port()),
            **env,
        }
    process = subprocess.Popen(
        [
            str(LAUNCHER if workers else LOCUST),
            *("-f", str(LOCUSTFILE), *mode, "--only-summary"),
            *("--run-time", run_time, "--stop-timeout", "15", "--host", host),
        ],
        env={
            **os.environ,
            "STRESS_LEVEL": profile,
            "LOADTEST_METRICS_PORT": str(port),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    web_url = f"http://127.0.0.1:{web_port}" if web_port else None
    return LocustRun(profile, process, prefix, f"http://127.0.0.1:{port}/metrics", web_url=web_url)


def scrape_while_running(run: LocustRun) -> None:
    """Keep a scrape taken while users are running and some requests have been answered."""

    def running() -> Samples | None:
        samples = scrape(run.metrics_url)
        users = sum(v for name, _, v in samples if name == "dockpulse_loadtest_users")
        answered = sum(v for name, _, v in samples if name == "dockpulse_loadtest_requests_total")
        return samples if users > 0 and answered > 0 else None

    run.samples = wait_until(running, timeout=15)
