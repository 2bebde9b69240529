"""End to end: a fault in the demo app's container becomes a mail in the relay's outbox.

Real container, real exporter, Prometheus, Alertmanager and relay with short test timings
(see conftest.py); a mail is a .eml file the relay's outbox backend wrote.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from dockpulse_stack.engine import Engine
from testkit.helpers import free_port, wait_until
from testkit.local_stack import query
from testkit.mail import mails_about, wait_for_mail
from testkit.mail_view import chart_as_shown
from tests.e2e.conftest import MonitoredStack

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "mail-example.png"

pytestmark = pytest.mark.docker


def test_killed_webapp_is_mailed_as_critical_and_its_recovery_as_resolved(
    stack: MonitoredStack, tmp_path: Path
) -> None:
    """With why it went down (the exporter's context); DOCKPULSE_WRITE_SCREENSHOT=1 writes the
    mail as a browser shows it to docs/mail-example.png."""
    name = stack.webapp.name
    killed_at = time.time()
    stack.webapp.kill()
    down = wait_for_mail(stack.relay.outbox, "ContainerDown", name, since=killed_at)
    stack.webapp.start()
    resolved = wait_for_mail(stack.relay.outbox, "[RESOLVED]", name, since=down.arrived)

    assert down.subject == f"[CRITICAL] 1 alert: ContainerDown ({name})"
    assert f"Container {name} is down" in down.text
    mail = down.message
    graphs = [part.get_filename() for part in mail.iter_attachments()]
    assert graphs == [f"ContainerDown-{name}.png"], down.text  # container_up dropping to 0
    assert "exit code 137 (killed (SIGKILL))" in down.text, down.text  # the exporter's context
    assert "Exit 137 without an OOM kill: something killed it" in down.text
    assert "Last log lines:" in down.text
    page = mail.get_body(preferencelist=("html",)).get_content()
    assert "<b>Last log lines</b>" in page and "die exit code 137" in page
    if os.environ.get("DOCKPULSE_WRITE_SCREENSHOT") == "1":
        (graph,) = mail.iter_attachments()
        chart = Image.open(io.BytesIO(graph.get_content())).convert("RGB")
        _, shot = chart_as_shown(mail, chart, tmp_path, window="760,1250")
        shutil.copyfile(shot, SCREENSHOT)
    assert resolved.subject == f"[RESOLVED] [CRITICAL] 1 alert: ContainerDown ({name})"
    # Its failing probe said nothing new while the container was down (inhibited).
    assert not [mail for mail in [down, resolved] if "ProbeFailed" in mail.subject]
    # Left as found: on a slow machine the restarted app may still fail its probe once
    # ContainerDown no longer inhibits it; the next test must not see that ProbeFailed.
    wait_until(lambda: query(stack.prometheus.url, "probe_success == 1"), timeout=30)
    wait_until(lambda: _settled(stack.alertmanager_url, "ProbeFailed"), timeout=30)
    if mails_about(stack.relay.outbox, "ProbeFailed", since=killed_at):
        wait_for_mail(stack.relay.outbox, "[RESOLVED]", "ProbeFailed", since=killed_at)


def _settled(alertmanager_url: str, alertname: str) -> bool:
    """No alert `alertname` firing, inhibited or not, in Alertmanager."""
    answer = requests.get(
        f"{alertmanager_url}/api/v2/alerts",
        params={"filter": f'alertname="{alertname}"'},
        timeout=5,
    )
    return answer.ok and not answer.json()


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


FATAL_LINE = "FATAL: cannot open /data/db: permission denied"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example key
LEAKY = f"""
import sys, time
time.sleep(1)
print("db login password=hunter2 accepted", flush=True)
print("aws_secret_access_key is {AWS_SECRET}", flush=True)
sys.stdout.write("all good\\rSubject: fake\\u2028Bcc: victim@example.com\\n")
sys.exit(1)
"""
REFUSED = "import socket; socket.create_connection(('127.0.0.1', 9))"  # nobody listens on 9


class Containers:
    """`docker` against the test engine; removes what it started."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        self.engine, self.prefix, self.names, self.images = engine, prefix, [], []

    def docker(self, *args: str) -> str:
        done = subprocess.run(
            ["docker", *args], env=self.engine.env(), capture_output=True, text=True
        )
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout.strip()

    def run(self, name: str, image: str, *command: str, options: tuple[str, ...] = ()) -> str:
        full = f"{self.prefix}-{name}"
        if full not in self.names:
            self.names.append(full)
        self.docker("run", "--detach", "--name", full, "--network=none", *options, image, *command)
        return full

    def remove(self) -> None:
        for name in self.names:
            subprocess.run(["docker", "rm", "-f", name], env=self.engine.env(), capture_output=True)
        for image in self.images:
            subprocess.run(["docker", "rmi", image], env=self.engine.env(), capture_output=True)


def _post_alert(alertmanager_url: str, labels: dict[str, str]) -> None:
    """An alert straight into the real Alertmanager (its exporter does not exist)."""
    body = [{"labels": labels, "annotations": {"summary": f"{labels['name']} is down"}}]
    answer = requests.post(f"{alertmanager_url}/api/v2/alerts", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def test_the_mails_say_why_containers_went_down(
    stack: MonitoredStack, engine: Engine, python_base: str
) -> None:
    """Issue 21's scenarios at once on one stack: the exporter's context (log lines with their
    time, exit cause, events, OOM with limit and peak, health output, an image change, the
    redaction, `dockpulse.mail_logs=false`) in the real mails, and an exporter away said so."""
    started = time.time()
    outbox = stack.relay.outbox
    box = Containers(engine, stack.prefix)
    fatal, leaky, quiet, oom, sick, deploy, probed = (
        f"{stack.prefix}-{name}"
        for name in ("fatal", "leaky", "quiet", "oom", "sick", "deploy", "probed")
    )
    nothing_listens = f"http://127.0.0.1:{free_port()}/health"
    ghost, away = f"{stack.prefix}-ghost", f"127.0.0.1:{free_port()}"

    def redeploy() -> None:
        """Recreated under the same name from a new image, then crashing."""
        box.run("deploy", python_base, "sleep", "600")
        new_image = f"{stack.prefix}-deploy:v2"
        box.images.append(new_image)
        box.docker("commit", deploy, new_image)  # a new image id, as a deploy brings
        time.sleep(1.5)  # the exporter has seen the first one run (refresh 500 ms)
        box.docker("rm", "--force", deploy)
        box.run("deploy", new_image, "sh", "-c", "sleep 3; echo 'migration failed' >&2; exit 2")

    starts = [
        redeploy,  # the longest: first
        lambda: box.run(
            "oom", python_base, "python3", "-c", LEAK,
            options=("--memory=32m", "--memory-swap=32m"),
        ),
        lambda: box.run(
            "sick", python_base, "sleep", "600",
            options=(f"--health-cmd=python3 -c \"{REFUSED}\"", "--health-interval=1s",
                     "--health-retries=1", "--health-timeout=5s"),
        ),
        lambda: box.run(
            "fatal", python_base, "sh", "-c", f"sleep 1; echo '{FATAL_LINE}' >&2; exit 1"
        ),
        lambda: box.run("leaky", python_base, "python3", "-c", LEAKY),
        lambda: box.run(
            "quiet", python_base, "sh", "-c", "echo quiet-line-xyz; sleep 1; exit 3",
            options=("--label=dockpulse.mail_logs=false",),
        ),
        lambda: box.run(  # issue 19: probed from its labels alone, no config edit
            "probed", python_base, "sleep", "600",
            options=(f"--label=dockpulse.probe.url={nothing_listens}",
                     "--label=dockpulse.probe.interval=1s", "--label=dockpulse.probe.timeout=1s"),
        ),
    ]  # fmt: skip
    try:
        with ThreadPoolExecutor(max_workers=len(starts)) as pool:  # the scenarios at once
            for started_one in [pool.submit(start) for start in starts]:
                started_one.result()
        posted = time.time()
        labels = {"alertname": "ContainerDown", "severity": "critical", "instance": away}
        _post_alert(stack.alertmanager_url, {**labels, "name": ghost})

        mails = {
            "fatal": wait_for_mail(outbox, "ContainerDown", fatal, "Last log lines", since=started),
            "leaky": wait_for_mail(outbox, "ContainerDown", leaky, "Last log lines", since=started),
            "quiet": wait_for_mail(outbox, "ContainerDown", quiet, "exit code 3", since=started),
            "oom": wait_for_mail(outbox, "ContainerOOMKilled", oom, since=started, timeout=60),
            "sick": wait_for_mail(outbox, "ContainerUnhealthy", sick, since=started, timeout=60),
            "deploy": wait_for_mail(outbox, "ContainerDown", deploy, "exit code 2", since=started),
            "ghost": wait_for_mail(outbox, "ContainerDown", ghost, since=posted),
            "probed": wait_for_mail(outbox, "ProbeFailed", probed, since=started, timeout=60),
        }
    finally:
        box.remove()
    # The label probe's series go with its container.
    gone = f'probe_success{{probe="{probed}"}}'
    wait_until(lambda: not query(stack.prometheus.url, gone), timeout=30)

    text = mails["fatal"].text
    assert re.search(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z {FATAL_LINE}", text), text
    assert "exit code 1 (generic error)" in text and "die exit code 1" in text, text

    every_leaky = "\n".join(mail.text for mail in mails_about(outbox, leaky, since=started))
    assert "hunter2" not in every_leaky and AWS_SECRET not in every_leaky, every_leaky
    assert "password=[REDACTED]" in every_leaky and "[REDACTED AWS SECRET KEY]" in every_leaky
    assert "all good Subject: fake Bcc: victim@example.com" in every_leaky  # folded: one line
    assert not re.search(r"^\s*(Subject|Bcc): ", every_leaky.split("\n", 1)[1], re.M)

    text = mails["quiet"].text
    assert "log lines are turned off (dockpulse.mail_logs=false)" in text, text
    assert "quiet-line-xyz" not in "".join(m.text for m in mails_about(outbox, quiet))
    assert "die exit code 3" in text, text  # the events stay

    text = mails["oom"].text
    assert "OOM-killed: yes" in text and "limit 32.0 MiB, peak seen" in text, text
    peak = re.search(r"peak seen (\d+\.\d) MiB", text)  # the last sample (500 ms refresh)
    assert peak and 0 < float(peak.group(1)) <= 32, text
    assert "It was OOM-killed (limit 32.0 MiB" in text

    text = mails["sick"].text
    assert "Connection refused" in text and "not listening on its port" in text, text

    text = mails["deploy"].text
    assert re.search(r"recreated from image sha256:[0-9a-f]{64} \(was sha256:", text), text
    assert "migration failed" in text

    text = mails["probed"].text
    assert f"Health probe {probed} is failing" in text and "reason: refused" in text, text

    ghost_mail = mails["ghost"]
    assert f"Why: context unavailable: the exporter at {away} is unreachable" in ghost_mail.text
    assert ghost_mail.arrived - posted < 15, ghost_mail.arrived - posted  # on time
