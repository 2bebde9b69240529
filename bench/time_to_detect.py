"""Time to detect: from a fault in the demo app's container to its alert mail in the outbox.

Runs the stack with its SHIPPED settings: the demo webapp as a real container (local image, host
network) on a throwaway PostgreSQL; `dockpulse-exporter` with exporter/exporter.yml; Prometheus
with prometheus/prometheus.yml and the rules; Alertmanager with alertmanager/alertmanager.yml;
`dockpulse-relay` with its defaults and the outbox backend. Only ports and paths are changed, and
Prometheus keeps only this run's containers (the engine may be shared). Measured per alert:

- probe failed: the database is stopped, /health answers 503 -> ProbeFailed mail;
- sustained CPU breach: two requests at a time to /stress/cpu keep two cores busy (the host's
  2 cores: 100 % against the default 40 % threshold) -> ContainerHighCpu digest mail; timed from
  the start of the breach as the rule sees it (the pending alert's activeAt) and from the burn;
- container killed: `docker kill` -> ContainerDown mail, `--kills` times, each time a fresh
  webapp container (the relay mails the same alert at most once per ALERT_COOLDOWN).

Each with its stages: detect (fault -> rule true in Prometheus), hold (the rule's `for`),
alertmanager (firing -> relay received it: group_wait), relay (received -> .eml written:
BUFFER_TIMEOUT and CHECK_INTERVAL for warnings, at once for critical alerts).

    .venv/bin/python bench/time_to_detect.py [--kills 3]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from dockpulse_relay.config import RelayConfig
from dockpulse_stack.engine import find_or_start_engine
from testkit.local_stack import (
    ALERTMANAGER_CONFIG,
    EXPORTER_CONFIG,
    PROMETHEUS_DIR,
    LocalStack,
    demo_webapp_probe,
    exporter_config,
    prometheus_config,
    query,
    seconds,
)
from testkit.mail import mails_about
from testkit.postgres import PostgresServer
from testkit.relay_process import RelayProcess
from testkit.webapp_container import WebappContainer, webapp_image

KILL_GOAL_SECONDS = 15.0
CPU_GOAL_MARGIN_SECONDS = 20.0  # goal: the rule's `for` + this
POLL_SECONDS = 0.25


def shipped_settings() -> dict[str, float]:
    """The settings on the alert path, from the repository's files and the relay's defaults."""
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "exporter")
    rules = {
        rule["alert"]: seconds(rule.get("for", "0s"))
        for path in (PROMETHEUS_DIR / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    routes = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["route"]["routes"]
    group_wait = {
        matcher.split("=")[1].strip('"'): seconds(route.get("group_wait", "30s"))
        for route in routes
        for matcher in route.get("matchers", [])
        if matcher.startswith("severity=")
    }
    exporter = yaml.safe_load(EXPORTER_CONFIG.read_text())
    relay = RelayConfig()
    return {
        "exporter refresh_interval": seconds(exporter.get("refresh_interval", "5s")),
        "probe interval": seconds(demo_webapp_probe().get("interval", "5s")),
        "exporter scrape_interval": seconds(job.get("scrape_interval", "15s")),
        "evaluation_interval": seconds(prometheus["global"]["evaluation_interval"]),
        "ProbeFailed for": rules["ProbeFailed"],
        "ContainerHighCpu for": rules["ContainerHighCpu"],
        "critical group_wait": group_wait["critical"],
        "warning group_wait": group_wait["warning"],
        "relay BUFFER_TIMEOUT": relay.buffer_timeout,
        "relay CHECK_INTERVAL": relay.check_interval,
        "relay ALERT_COOLDOWN": relay.alert_cooldown,
    }


def worst_cases(settings: dict[str, float]) -> dict[str, float]:
    """The longest each path can take by the settings alone (processing time not counted).

    Prometheus fires an alert at the first evaluation `for` after the one that found it true;
    a warning then waits group_wait in Alertmanager, and BUFFER_TIMEOUT plus up to one
    CHECK_INTERVAL in the relay; a critical alert goes out at once.
    """
    scrape, evaluation = settings["exporter scrape_interval"], settings["evaluation_interval"]
    hold = math.ceil(settings["ProbeFailed for"] / evaluation) * evaluation
    cpu_hold = math.ceil(settings["ContainerHighCpu for"] / evaluation) * evaluation
    relay_warning = settings["relay BUFFER_TIMEOUT"] + settings["relay CHECK_INTERVAL"]
    return {
        # The exporter sees a kill on Docker's event stream at once.
        "kill": scrape + evaluation + settings["critical group_wait"],
        "probe": settings["probe interval"]
        + scrape
        + evaluation
        + hold
        + settings["critical group_wait"],
        "cpu": cpu_hold + settings["warning group_wait"] + relay_warning,
    }


def epoch(timestamp: str) -> float:
    """Seconds since the epoch from RFC 3339 with up to nanoseconds (Prometheus, the relay)."""
    timestamp = re.sub(r"(\.\d{6})\d+", r"\1", timestamp).replace("Z", "+00:00")
    return datetime.fromisoformat(timestamp).timestamp()


@dataclass
class Timeline:
    """When one alert passed each point of the path (seconds since the epoch)."""

    fault: float
    active: float | None  # Prometheus: the first evaluation that found the condition true
    firing: float | None  # Prometheus: the evaluation that made it fire (after `for`)
    received: float | None  # relay: the webhook delivered it (alert log)
    mailed: float  # outbox: the .eml written (file time)

    @property
    def total(self) -> float:
        return self.mailed - self.fault

    def stages(self) -> str:
        points = [
            ("detect", self.fault, self.active),
            ("hold", self.active, self.firing),
            ("alertmanager", self.firing, self.received),
            ("relay", self.received, self.mailed),
        ]
        return ", ".join(
            f"{name} {end - start:.1f}" if start is not None and end is not None else f"{name} ?"
            for name, start, end in points
        )


def matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


def alert_samples(prometheus_url: str, wanted: dict[str, str], since: float) -> list[tuple]:
    """(timestamp, alertstate) of every ALERTS sample of the alert since `since`: Prometheus
    writes one per evaluation while the alert is pending or firing."""
    selector = ",".join(f'{key}="{value}"' for key, value in wanted.items())
    window = int(time.time() - since) + 10
    found = query(prometheus_url, f"ALERTS{{{selector}}}[{window}s]")
    return sorted(
        (float(stamp), series["metric"]["alertstate"])
        for series in found
        for stamp, _ in series["values"]
        if float(stamp) >= since - 1
    )


def relay_received(relay: RelayProcess, wanted: dict[str, str], since: float) -> float | None:
    """When the relay first received the alert firing, from its alert log."""
    if not relay.alert_log_path.exists():
        return None
    for line in relay.alert_log_path.read_text().splitlines():
        entry = json.loads(line)
        received = epoch(entry["time"])
        firing = entry["status"] == "firing"
        if firing and received >= since and matches(entry["labels"], wanted):
            return received
    return None


def follow_alert(
    prometheus_url: str, relay: RelayProcess, wanted: dict[str, str], fault: float, timeout: float
) -> Timeline:
    """Wait for the mail of the alert with labels `wanted`, then trace its path back."""
    words = [wanted["alertname"], *([wanted["name"]] if "name" in wanted else [])]
    deadline = time.monotonic() + timeout
    while True:
        mails = mails_about(relay.outbox, *words, since=fault)
        firing = [mail for mail in mails if "[RESOLVED]" not in mail.subject]
        if firing:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no mail for {wanted} within {timeout:.0f}s")
        time.sleep(POLL_SECONDS)
    samples = alert_samples(prometheus_url, wanted, fault)
    return Timeline(
        fault,
        active=samples[0][0] if samples else None,
        firing=next((stamp for stamp, state in samples if state == "firing"), None),
        received=relay_received(relay, wanted, fault),
        mailed=firing[0].arrived,
    )


class CpuBurn:
    """`burners` requests at a time to the webapp's /stress/cpu, until stopped."""

    def __init__(self, url: str, burners: int) -> None:
        self.url = f"{url}/stress/cpu?seconds=5"
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.burn, daemon=True) for _ in range(burners)]

    def burn(self) -> None:
        while not self.stopping.is_set():
            try:
                requests.get(self.url, timeout=30)
            except requests.RequestException:
                time.sleep(0.5)

    def __enter__(self) -> CpuBurn:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)


@dataclass
class Bench:
    engine: Any
    image: str
    database: PostgresServer
    webapp: WebappContainer
    prometheus_url: str
    relay: RelayProcess
    prefix: str
    cycle: float  # seconds: the longer of the scrape and evaluation intervals

    def probe_failed(self, timeout: float) -> Timeline:
        stopped = time.time()
        self.database.stop()
        try:
            wanted = {"alertname": "ProbeFailed", "probe": "webapp"}
            return follow_alert(self.prometheus_url, self.relay, wanted, stopped, timeout)
        finally:
            self.database.start()
            self.webapp.wait_healthy()

    def cpu_breach(self, burners: int, timeout: float) -> tuple[Timeline, float]:
        """The timeline, and the highest CPU % (1-minute average) the rule saw meanwhile."""
        with CpuBurn(self.webapp.url, burners):
            wanted = {"alertname": "ContainerHighCpu", "name": self.webapp.name}
            timeline = follow_alert(self.prometheus_url, self.relay, wanted, time.time(), timeout)
        window = int(time.time() - timeline.fault) + 1
        usage = f'dockpulse:container_cpu_percent{{name="{self.webapp.name}"}}[{window}s]'
        peak = query(self.prometheus_url, f"max_over_time({usage})")
        return timeline, float(peak[0]["value"][1]) if peak else float("nan")

    def container_killed(self, run: int, timeout: float) -> Timeline:
        name = f"{self.prefix}-kill-{run}"
        webapp = WebappContainer(self.engine, name, self.database.url(), compose_service=None)
        try:
            webapp.run(self.image)
            seen = f'container_up{{name="{name}"}} == 1'
            deadline = time.monotonic() + 60
            while not query(self.prometheus_url, seen) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
            # At a random point of the scrape and evaluation cycles, as a real failure is.
            time.sleep(random.uniform(0, self.cycle))
            killed = time.time()
            webapp.kill()
            wanted = {"alertname": "ContainerDown", "name": name}
            return follow_alert(self.prometheus_url, self.relay, wanted, killed, timeout)
        finally:
            webapp.remove()


def start_stack(cleanup: ExitStack, work_dir: Path, cycle: float) -> Bench:
    engine = find_or_start_engine()
    prefix = f"bench-ttd-{uuid.uuid4().hex[:8]}"
    print(f"time_to_detect: building the webapp image, starting {prefix}-* ...", flush=True)
    image = webapp_image(engine)
    database = cleanup.enter_context(PostgresServer())
    webapp = WebappContainer(engine, f"{prefix}-webapp", database.url())
    cleanup.callback(webapp.remove)
    webapp.run(image)
    stack = cleanup.enter_context(LocalStack(work_dir))
    relay = stack.relay()
    alertmanager = stack.alertmanager(relay.url)
    exporter = stack.exporter(exporter_config(f"{webapp.url}/health"))
    config = prometheus_config(exporter.port, [alertmanager.port], f"{prefix}-.*")
    prometheus = stack.prometheus(config)
    watched = f'dockpulse:probe_container_info{{name="{webapp.name}"}}'
    deadline = time.monotonic() + 120
    while not query(prometheus.url, watched) or not query(prometheus.url, "probe_success == 1"):
        if time.monotonic() > deadline:
            raise TimeoutError("Prometheus did not see the webapp and its probe within 120s")
        time.sleep(1)
    return Bench(engine, image, database, webapp, prometheus.url, relay, prefix, cycle)


def advice(name: str, measured: float, goal: float, settings: dict[str, float]) -> str:
    """Which settings make up the path, when `measured` misses `goal`."""
    if measured <= goal:
        return f"{name}: goal {goal:.0f} s met ({measured:.1f} s)"
    over = measured - goal
    if name == "container killed":
        knobs = "exporter scrape_interval, evaluation_interval, critical group_wait"
    else:
        knobs = "warning group_wait, relay BUFFER_TIMEOUT, relay CHECK_INTERVAL"
    values = ", ".join(f"{knob} {settings[knob]:g} s" for knob in knobs.split(", "))
    return f"{name}: goal {goal:.0f} s MISSED by {over:.1f} s; shorten these by that: {values}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=3, help="container kills to time (3)")
    parser.add_argument("--burners", type=int, default=2, help="concurrent CPU burns (2)")
    args = parser.parse_args()
    settings = shipped_settings()
    bound = worst_cases(settings)
    print("shipped settings on the alert path (seconds):")
    for name, value in settings.items():
        print(f"  {name:<26} {value:g}")
    cpu_goal = settings["ContainerHighCpu for"] + CPU_GOAL_MARGIN_SECONDS
    cycle = max(settings["exporter scrape_interval"], settings["evaluation_interval"])

    with tempfile.TemporaryDirectory(prefix="ttd-") as work_dir, ExitStack() as cleanup:
        bench = start_stack(cleanup, Path(work_dir), cycle)
        print("stack up; stages in seconds: detect, hold (`for`), alertmanager, relay")

        probe = bench.probe_failed(timeout=120)
        print(
            f"probe failed (database stopped) -> mail: {probe.total:5.1f} s "
            f"(worst case by the settings {bound['probe']:.0f} s; {probe.stages()})"
        )
        cpu, peak = bench.cpu_breach(args.burners, settings["ContainerHighCpu for"] + 300)
        assert cpu.active is not None
        from_breach = cpu.mailed - cpu.active
        print(
            f"sustained CPU breach -> mail: {from_breach:5.1f} s from the breach "
            f"(worst case by the settings {bound['cpu']:.0f} s), {cpu.total:.1f} s from the "
            f"start of the burn ({cpu.stages()}; CPU up to {peak:.0f} % of the host)"
        )
        kills = []
        for run in range(1, args.kills + 1):
            kill = bench.container_killed(run, timeout=120)
            kills.append(kill.total)
            print(
                f"container killed -> mail, run {run}: {kill.total:5.1f} s "
                f"(worst case by the settings {bound['kill']:.0f} s; {kill.stages()})"
            )

    worst = max(kills)
    print(advice("container killed", worst, KILL_GOAL_SECONDS, settings))
    print(advice("sustained CPU breach", from_breach, cpu_goal, settings))
    print(
        f"time to detect (shipped defaults): container killed -> mail "
        f"{'/'.join(f'{k:.1f}' for k in kills)} s, max {worst:.1f} s (goal "
        f"{KILL_GOAL_SECONDS:.0f}); CPU breach -> mail {from_breach:.1f} s (goal "
        f"{cpu_goal:.0f}; {cpu.total:.1f} s from the burn); probe failed -> mail "
        f"{probe.total:.1f} s"
    )


if __name__ == "__main__":
    main()
