"""Test settings for the local stack (`dockpulse.local_stack`), shared by tests/rules and
tests/e2e: everything a few seconds instead of minutes, so a test sees an alert's mail quickly."""

from __future__ import annotations

from pathlib import Path

from dockpulse.outbox import Mail, mails_about
from tests.helpers import wait_until

# Prometheus scrapes and evaluates every second.
TEST_INTERVAL = "1s"
# Warnings wait 1 s in the relay's buffer (60 s shipped), its dispatcher looks 5 times a second,
# and the same alert may be mailed again after 1 s (a test fails and recovers within seconds).
TEST_RELAY_TIMINGS = {"BUFFER_TIMEOUT": "1", "CHECK_INTERVAL": "0.2", "ALERT_COOLDOWN": "1"}


def wait_for_mail(outbox: Path, *words: str, since: float = 0.0, timeout: float = 45) -> Mail:
    """The first mail written since `since` that contains every word."""
    return wait_until(lambda: mails_about(outbox, *words, since=since), timeout=timeout)[0]
