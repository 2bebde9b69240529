"""Load from more than one process: `dockpulse-loadtest` with LOADTEST_WORKERS=2 runs a real Locust
master and two real workers against the real webapp (on real PostgreSQL). The profile's shape
runs on the master, its users are spread over both workers, and the master's metrics are the
totals: every request the webapp counted, endpoint by endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from contextlib import suppress
from pathlib import Path

from tests.helpers import Samples, free_port, scrape, value, wait_for_samples, wait_until
from tests.loadtest.conftest import LAUNCHER, LOCUSTFILE

VISITOR_ENDPOINTS = ("/", "/health")  # what the `normal` profile's users ask


def webapp_requests(webapp_url: str) -> Counter[str]:
    """Requests the webapp answered so far, by endpoint (every method and status)."""
    counts: Counter[str] = Counter()
    for name, labels, number in scrape(f"{webapp_url}/metrics"):
        if name == "dockpulse_webapp_requests_total":
            counts[labels["endpoint"]] += int(number)
    return counts


def loadtest_requests(samples: Samples) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, labels, number in samples:
        if name == "dockpulse_loadtest_requests_total":
            counts[labels["name"]] += int(number)
    return counts


def test_master_with_two_workers_counts_what_the_webapp_answered(
    loadtest_webapp: str, tmp_path: Path
) -> None:
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    before = webapp_requests(loadtest_webapp)
    env = {
        **os.environ,
        "STRESS_LEVEL": "normal",
        "LOCUST_LOCUSTFILE": str(LOCUSTFILE),
        "LOADTEST_WORKERS": "2",
        "LOCUST_MASTER_BIND_PORT": str(free_port()),
        "LOADTEST_METRICS_PORT": str(metrics_port),
    }
    # --autostart/--autoquit (as the compose service runs it): the master stays up 30 s after
    # the run, so its final totals can be read.
    command = [
        str(LAUNCHER),
        *("--autostart", "--autoquit", "30", "--web-host", "127.0.0.1"),
        *("--web-port", str(free_port()), "--run-time", "8s", "--stop-timeout", "3"),
        *("--host", loadtest_webapp, "--csv", str(tmp_path / "normal")),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        running = wait_for_samples(
            lambda: scrape(metrics_url),
            lambda s: value(s, "dockpulse_loadtest_users", user_class="Visitor") == 5,
            timeout=60,
        )
        wait_for_samples(
            lambda: scrape(metrics_url),
            lambda s: value(s, "dockpulse_loadtest_active", profile="normal") == 0,
            timeout=60,
        )
        # Stopping: users finish their requests (within --stop-timeout), and the workers report
        # to the master every 3 s (Locust's interval), so both counts settle within seconds.
        totals: dict[str, int] = {}
        answered: dict[str, int] = {}

        def caught_up() -> bool:
            totals.update(loadtest_requests(scrape(metrics_url)))
            after = webapp_requests(loadtest_webapp)
            answered.update({e: after[e] - before[e] for e in VISITOR_ENDPOINTS})
            return totals == answered

        with suppress(AssertionError):  # reported below, with both counts
            wait_until(caught_up, timeout=15)
        process.send_signal(signal.SIGINT)  # the master quits, and its workers with it
        output, _ = process.communicate(timeout=30)  # well before --autoquit ends it
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode in (0, 1), output[-3000:]  # 1: some request failed
    assert "Traceback" not in output, output[-3000:]
    assert value(running, "dockpulse_loadtest_workers") == 2
    assert value(running, "dockpulse_loadtest_active", profile="normal") == 1
    assert totals["/"] > 0 and totals["/health"] > 0
    assert totals == answered, output[-3000:]  # the master's totals: both workers' requests
    print(f"master + 2 workers: {sum(totals.values())} requests, webapp answered {answered}")


def test_a_bad_worker_count_is_refused_naming_its_variable() -> None:
    result = subprocess.run(
        [str(LAUNCHER), "--headless"],
        env={**os.environ, "LOADTEST_WORKERS": "two"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dockpulse-loadtest: LOADTEST_WORKERS: expected a whole number >= 0, got 'two'"
    ]
