"""Crash safety: kill -9 with warnings in the buffer; after a restart each is mailed once."""

from __future__ import annotations

import re
from collections import Counter

from testkit.helpers import value, wait_until
from testkit.mail import text_of
from tests.relay.payloads import alert, notification


def test_buffered_warnings_survive_kill_9_and_go_out_once(start_relay) -> None:
    relay = start_relay(BUFFER_TIMEOUT="1h")
    containers = [f"app{number}" for number in range(30)]
    for name in containers:
        assert relay.post(notification(alert("HighCpu", name, "warning"))).status_code == 200
    relay.post(notification(alert("ContainerDown", "web", "critical")))
    wait_until(relay.mails)  # the critical one went out; the warnings wait
    relay.kill()

    relay.restart(BUFFER_TIMEOUT="0.5")
    for name in containers[:5]:  # Alertmanager re-sends some after the restart
        assert relay.post(notification(alert("HighCpu", name, "warning"))).status_code == 200
    wait_until(
        lambda: (
            value(relay.metrics(), "dockpulse_relay_queue_depth", queue="buffered_alerts") == 0
            and value(relay.metrics(), "dockpulse_relay_queue_depth", queue="pending_mails") == 0
        )
    )
    mails = relay.mails()
    kinds = {mail["X-Dockpulse-Kind"]: mail for mail in mails}
    assert len(mails) == 2
    assert set(kinds) == {"critical", "digest"}
    digest = text_of(kinds["digest"])
    mailed = Counter(re.findall(r"^Container:\s+(\S+)", digest, re.MULTILINE))
    assert mailed == Counter(containers)
