"""End to end: a fault in the demo app's container becomes a mail in the relay's outbox.

Real container, real exporter, Prometheus, Alertmanager and relay with short test timings
(see conftest.py); a mail is a .eml file the relay's outbox backend wrote.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import time
from datetime import datetime
from typing import Any

import pytest
import requests

from dockpulse_stack.engine import Engine
from tests.e2e.conftest import MonitoredStack
from tests.helpers import wait_until
from tests.support.local_stack import query
from tests.support.mail import wait_for_mail

pytestmark = pytest.mark.docker


def test_killed_webapp_is_mailed_as_critical_and_its_recovery_as_resolved(
    stack: MonitoredStack,
) -> None:
    name = stack.webapp.name
    killed_at = time.time()
    stack.webapp.kill()
    down = wait_for_mail(stack.relay.outbox, "ContainerDown", name, since=killed_at)
    stack.webapp.start()
    resolved = wait_for_mail(stack.relay.outbox, "[RESOLVED]", name, since=down.arrived)

    assert down.subject == f"[CRITICAL] 1 alert: ContainerDown ({name})"
    assert f"Container {name} is down" in down.text
    mail = email.message_from_bytes(down.path.read_bytes(), policy=email.policy.default)
    graphs = [part.get_filename() for part in mail.iter_attachments()]
    assert graphs == [f"ContainerDown-{name}.png"], down.text  # container_up dropping to 0
    assert resolved.subject == f"[RESOLVED] [CRITICAL] 1 alert: ContainerDown ({name})"
    # Its failing probe said nothing new while the container was down (inhibited).
    assert not [mail for mail in [down, resolved] if "ProbeFailed" in mail.subject]


def test_stopped_database_fails_health_and_the_probe_alert_is_mailed(stack: MonitoredStack) -> None:
    stopped_at = time.time()
    stack.database.stop()
    try:
        health = requests.get(f"{stack.webapp.url}/health", timeout=10)
        mail = wait_for_mail(stack.relay.outbox, "ProbeFailed", since=stopped_at)
    finally:
        stack.database.start()

    assert health.status_code == 503
    assert health.json()["database"] == "unreachable"
    assert mail.subject == f"[CRITICAL] 1 alert: ProbeFailed ({stack.webapp.name})"
    assert "Health probe webapp is failing" in mail.text
    assert f"{stack.webapp.url}/health" in mail.text


# Grows by 1 MiB every 0.25 s (written, so it counts) until the OOM killer stops it.
LEAK = """
import time
held = []
while True:
    held.append(b"\\x01" * (1 << 20))
    time.sleep(0.25)
"""


def test_a_leaking_container_is_warned_about_before_the_oom_kill(
    stack: MonitoredStack, engine: Engine, python_base: str
) -> None:
    """ContainerMemoryExhaustionPredicted, with the container's own horizon (Docker label),
    mailed while the container still runs, before the OOM killer ends it."""
    name = f"{stack.prefix}-leak"
    started = time.time()
    docker = ["docker", "run", "--detach", "--name", name, "--network=none"]
    docker += ["--memory=80m", "--memory-swap=80m"]  # no swap: the limit is the limit
    docker += ["--label=dockpulse.memory_forecast_horizon=15s"]
    run = subprocess.run(
        [*docker, python_base, "python3", "-c", LEAK],
        env=engine.env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr

    def state() -> dict[str, Any]:
        inspect = subprocess.run(
            ["docker", "inspect", "--format", "{{json .State}}", name],
            env=engine.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(inspect.stdout)

    try:
        mail = wait_for_mail(
            stack.relay.outbox, "ContainerMemoryExhaustionPredicted", name, since=started
        )
        ended = wait_until(lambda: (found := state())["Running"] is False and found, timeout=60)
        oom = f'container_oom_killed{{name="{name}"}} == 1'
        wait_until(lambda: query(stack.prometheus.url, oom), timeout=30)  # the exporter saw it
    finally:
        subprocess.run(["docker", "rm", "--force", name], env=engine.env(), capture_output=True)

    assert ended["OOMKilled"] is True, ended
    killed_at = datetime.fromisoformat(ended["FinishedAt"]).timestamp()
    fired = re.search(r"^Started: +(\S+)", mail.text, re.MULTILINE)
    assert fired, mail.text
    fired_at = datetime.fromisoformat(fired.group(1)).timestamp()
    assert fired_at < mail.arrived < killed_at, (fired_at, mail.arrived, killed_at)
    assert mail.subject == f"[WARNING] 1 alert: ContainerMemoryExhaustionPredicted ({name})"
    assert "its memory limit is 80MiB" in mail.text
    assert "within 15s" in mail.text  # the label's horizon
