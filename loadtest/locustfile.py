"""Load profiles for the dockpulse demo app, to watch the monitoring react.

    STRESS_LEVEL=cpu-intensive locust -f loadtest/locustfile.py --headless -t 60s \\
        --host http://127.0.0.1:8000

STRESS_LEVEL picks the profile (normal, cpu-intensive, memory-intensive, db-intensive, spike,
extreme; default normal). The target is `--host`, else TARGET_HOST, else http://127.0.0.1:8000.
A profile decides the users and spawn rate over time (its stages below), so `-u`/`-r` are
ignored; `-t` ends the run. The last stage holds until then; `spike` repeats its stages. All
other Locust options work as usual: `--csv`, `--html`, the web UI on :8089, `--master`/`--worker`.
Metrics for dashboards (profile, users, requests, failures, response times) are served on
:9646 (LOADTEST_METRICS_PORT), see `dockpulse_loadtest.metrics`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from locust import HttpUser, LoadTestShape, between, constant, events, task

from dockpulse_loadtest.metrics import start_exporter

TARGET_HOST = (
    os.environ.get("TARGET_HOST") or os.environ.get("TARGET_URL") or "http://127.0.0.1:8000"
)


# --- Users: what each kind of client does -------------------------------------------------


class Visitor(HttpUser):
    """Ordinary traffic: the home page and health checks (which ask the database)."""

    host = TARGET_HOST
    wait_time = between(0.5, 2)

    @task(5)
    def home(self) -> None:
        self.client.get("/")

    @task(3)
    def health(self) -> None:
        self.client.get("/health")


class CpuHog(HttpUser):
    """Asks the app to burn a core for two seconds at a time."""

    host = TARGET_HOST
    wait_time = between(0.2, 1)

    @task
    def burn(self) -> None:
        self.client.get("/stress/cpu?seconds=2", name="/stress/cpu")


class MemoryHog(HttpUser):
    """Asks the app to hold 128 MiB for five seconds at a time."""

    host = TARGET_HOST
    wait_time = between(0.2, 1)

    @task
    def hold(self) -> None:
        self.client.get("/stress/memory?mb=128&seconds=5", name="/stress/memory")


class MemoryHolder(HttpUser):
    """Holds 192 MiB for 30 s at a time and asks again at once: the memory stays taken, with
    only a moment's gap between holds (MemoryHog's pauses let it fall every few seconds). Its
    first request is a quick small one, so Locust's statistics show the endpoint at once."""

    host = TARGET_HOST
    wait_time = constant(0)
    next_hold = "mb=16&seconds=1"

    @task
    def hold(self) -> None:
        self.client.get(f"/stress/memory?{self.next_hold}", name="/stress/memory")
        self.next_hold = "mb=192&seconds=30"


class DbHog(HttpUser):
    """Runs batches of real queries and inserts against PostgreSQL."""

    host = TARGET_HOST
    wait_time = between(0.1, 0.5)

    @task
    def queries(self) -> None:
        self.client.get("/stress/db?queries=500", name="/stress/db")


class Troublemaker(HttpUser):
    """Slow answers and errors: what the latency and error-rate alerts watch."""

    host = TARGET_HOST
    wait_time = between(0.2, 1)

    @task(3)
    def slow(self) -> None:
        self.client.get("/stress/slow?ms=1500", name="/stress/slow")

    @task(1)
    def error(self) -> None:
        self.client.get("/stress/error", name="/stress/error")


# --- Profiles: who runs, how many, for how long --------------------------------------------


class Stage(NamedTuple):
    seconds: float  # how long the stage lasts
    users: int
    spawn_rate: float  # users started (or stopped) per second
    user_classes: tuple[type[HttpUser], ...]


class Profile(LoadTestShape):
    """Plays `stages` in order, then holds the last one (or starts over when `repeat`)."""

    abstract = True
    use_common_options = True  # we honour --run-time ourselves
    name = "none"
    stages: tuple[Stage, ...] = ()
    repeat = False

    def stage_at(self, elapsed: float) -> Stage:
        cycle = sum(stage.seconds for stage in self.stages)
        if self.repeat and cycle > 0:
            elapsed %= cycle
        for stage in self.stages:
            if elapsed < stage.seconds:
                return stage
            elapsed -= stage.seconds
        return self.stages[-1]

    def tick(self) -> tuple[int, float, list[type[HttpUser]]] | None:
        elapsed = self.get_run_time()
        options = self.runner.environment.parsed_options if self.runner else None
        run_time = getattr(options, "run_time", None)
        if run_time and elapsed >= run_time:
            return None
        stage = self.stage_at(elapsed)
        return stage.users, stage.spawn_rate, list(stage.user_classes)


class Normal(Profile):
    """A handful of visitors: the baseline every dashboard should show as calm."""

    abstract = True
    name = "normal"
    stages = (
        Stage(10, 5, 5, (Visitor,)),
        Stage(20, 10, 2, (Visitor,)),
    )


class CpuIntensive(Profile):
    """Visitors plus up to four users burning CPU: the CPU alerts should fire."""

    abstract = True
    name = "cpu-intensive"
    stages = (
        Stage(5, 4, 4, (Visitor, CpuHog)),
        Stage(20, 8, 4, (Visitor, CpuHog)),
    )


class MemoryIntensive(Profile):
    """Two users holding 192 MiB each without pause, beside two visitors: the demo app's working
    set stays near 90 % of its 512 MiB limit (ContainerHighMemory fires at 80 % after 2 min),
    short of the OOM killer, until the run ends."""

    abstract = True
    name = "memory-intensive"
    stages = (Stage(20, 4, 4, (Visitor, MemoryHolder)),)


class DbIntensive(Profile):
    """Batches of queries and inserts: PostgreSQL's CPU and disk work, the app waits on it."""

    abstract = True
    name = "db-intensive"
    stages = (
        Stage(5, 4, 4, (Visitor, DbHog)),
        Stage(20, 8, 4, (Visitor, DbHog)),
    )


class Spike(Profile):
    """Calm, then ten times the visitors at once, over and over: request rate and latency."""

    abstract = True
    name = "spike"
    repeat = True
    stages = (
        Stage(10, 5, 5, (Visitor,)),
        Stage(10, 50, 50, (Visitor,)),
    )


class Extreme(Profile):
    """Everything at once, past the app's caps: 429s, slow answers, errors, high CPU."""

    abstract = True
    name = "extreme"
    stages = (
        Stage(5, 10, 10, (Visitor, CpuHog, MemoryHog, DbHog, Troublemaker)),
        Stage(20, 40, 10, (Visitor, CpuHog, MemoryHog, DbHog, Troublemaker)),
    )


PROFILES = {
    profile.name: profile
    for profile in (Normal, CpuIntensive, MemoryIntensive, DbIntensive, Spike, Extreme)
}
STRESS_LEVEL = os.environ.get("STRESS_LEVEL", "normal").strip().lower() or "normal"
if STRESS_LEVEL not in PROFILES:
    choices = ", ".join(PROFILES)
    raise SystemExit(f"STRESS_LEVEL: unknown profile {STRESS_LEVEL!r}; choose one of {choices}")
PROFILES[STRESS_LEVEL].abstract = False  # the one shape Locust will find and run


@events.init.add_listener
def serve_loadtest_metrics(environment: Any, **kwargs: Any) -> None:
    start_exporter(environment)
