"""The buffer, cooldown, flapping and resolved rules on the pure planner with a fake clock.

`Planner` drives `plan_mails` as the relay's dispatcher does at each check (held alerts stay
buffered as held, a mail records its fingerprints' cooldown at the planning time, suppressed
alerts leave the buffer), on a clock the test moves: each case takes milliseconds. The wiring
through a real relay process keeps one end-to-end test per rule (test_cooldown.py,
test_digest.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from dockpulse_relay.compose.message import history, subject
from dockpulse_relay.intake.payload import parse_notification
from dockpulse_relay.model import BufferedAlert, Cooldown, MailPlan
from dockpulse_relay.plan.rules import plan_mails
from tests.relay.payloads import alert, down, notification, up

COOLDOWN = 4.0
CHECK_INTERVAL = 0.2


@dataclass
class Planner:
    """The relay's planning loop without its store, lanes and clock."""

    alert_cooldown: float = COOLDOWN
    buffer_timeout: float = 1.0
    send_resolved: bool = True
    digest_max_alerts: int = 50
    now: float = 1_000.0
    buffered: list[BufferedAlert] = field(default_factory=list)
    cooldowns: dict[str, Cooldown] = field(default_factory=dict)
    mails: list[tuple[float, MailPlan]] = field(default_factory=list)
    suppressed: dict[str, int] = field(default_factory=dict)

    def post(self, payload: dict[str, object]) -> None:
        for parsed in parse_notification(json.dumps(payload).encode()):
            self.buffered.append(BufferedAlert(len(self.buffered) + 1000, parsed, self.now))

    def check(self) -> list[MailPlan]:
        """One planning pass at `now`: what it mails."""
        plan = plan_mails(
            self.buffered,
            self.cooldowns,
            self.now,
            buffer_timeout=self.buffer_timeout,
            alert_cooldown=self.alert_cooldown,
            send_resolved=self.send_resolved,
            digest_max_alerts=self.digest_max_alerts,
        )
        done = {alert_id for mail in plan.mails for entry in mail.entries for alert_id in entry.ids}
        for reason, ids in plan.suppressed.items():
            self.suppressed[reason] = self.suppressed.get(reason, 0) + len(ids)
            done.update(ids)
        self.buffered = [
            replace(item, held=item.held or item.id in plan.held)
            for item in self.buffered
            if item.id not in done
        ]
        for mail in plan.mails:
            for entry in mail.entries:
                fingerprint = entry.alert.fingerprint
                self.cooldowns[fingerprint] = Cooldown(self.now, entry.alert.status, entry.held)
            self.mails.append((self.now, mail))
        return plan.mails

    def run(self, seconds: float) -> None:
        """Checks every CHECK_INTERVAL for `seconds` of the fake clock."""
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + CHECK_INTERVAL, 6)
            self.check()

    def subjects(self) -> list[str]:
        return [subject(mail) for _, mail in self.mails]


def test_a_second_outage_is_held_until_the_cooldown_ends() -> None:
    relay = Planner()
    relay.post(down(0))
    relay.run(0.2)
    relay.post(up(0))  # the first recovery after a plain outage mail goes at once
    relay.run(0.2)
    assert len(relay.mails) == 2
    relay.post(down(2))
    relay.run(COOLDOWN - 0.8)
    assert len(relay.mails) == 2, "held while the cooldown lasts"
    relay.run(1.0)
    (first_at, _), _, (mailed_at, last) = relay.mails
    assert mailed_at - first_at >= COOLDOWN
    assert subject(last).startswith("[FLAPPING down now] [CRITICAL] 1 alert: ContainerDown")
    assert history(last.entries[0]).startswith("went down once, down now; came back 0 times")


def test_flapping_that_ends_resolved_is_mailed_as_resolved() -> None:
    relay = Planner()
    relay.post(down(0))
    relay.run(0.2)
    relay.post(down(1))  # re-fired (its resolution was never seen), then recovered, all held
    relay.post(up(1))
    relay.run(COOLDOWN + 0.4)
    assert len(relay.mails) == 2
    _, last = relay.mails[1]
    assert subject(last).startswith("[FLAPPING up now] [RESOLVED] [CRITICAL]")
    assert history(last.entries[0]).startswith(
        "went down once in 60 s, up now (resolved); came back once"
    )


def test_with_resolved_mails_off_a_held_outage_is_still_mailed() -> None:
    relay = Planner(send_resolved=False)
    relay.post(down(0))
    relay.run(0.2)
    relay.post(up(0))  # not mailed: resolved mails are off
    relay.run(0.2)
    assert len(relay.mails) == 1
    assert relay.suppressed == {"resolved_disabled": 1}
    relay.post(down(2))  # an outage nobody has heard of yet...
    relay.post(up(2))  # ...over before the cooldown ends
    relay.run(COOLDOWN)
    assert len(relay.mails) == 2
    assert history(relay.mails[1][1].entries[0]).startswith(
        "went down once in 60 s, up now (resolved); came back once"
    )


def test_a_flapping_container_costs_one_mail_per_cooldown() -> None:
    relay = Planner()
    relay.post(down(0))
    relay.run(0.2)
    relay.post(up(0))
    relay.run(0.2)
    for minute in range(2, 22, 2):  # 10 more times down and up, all inside the cooldown
        relay.post(down(minute))
        relay.post(up(minute))
    relay.post(down(30))
    relay.run(COOLDOWN)
    assert len(relay.mails) == 3
    summary = history(relay.mails[2][1].entries[0])
    assert summary.startswith("went down 11 times in 28 min, down now; came back 10 times")
    assert "21 changes held back by the cooldown" in summary
    relay.post(up(30))  # the first recovery after a summary waits for the cooldown
    relay.run(COOLDOWN - 0.4)
    assert len(relay.mails) == 3
    relay.run(0.8)
    assert relay.subjects()[3].startswith("[FLAPPING up now] [RESOLVED] [CRITICAL]")
    assert relay.buffered == []


def test_critical_goes_at_once_and_warnings_wait_for_one_digest() -> None:
    relay = Planner(buffer_timeout=1.5)
    relay.post(notification(alert("HighCpu", "db", "warning")))
    relay.post(notification(alert("HighMemory", "cache", "warning")))
    relay.post(notification(alert("HighCpu", "worker", "warning")))
    relay.post(notification(alert("ContainerDown", "webapp", "critical")))
    relay.run(1.4)
    assert relay.subjects() == ["[CRITICAL] 1 alert: ContainerDown (webapp)"]
    relay.run(0.2)
    assert relay.subjects()[1:] == ["[WARNING] 3 alerts: HighCpu (db, worker), HighMemory (cache)"]
    assert relay.mails[1][1].kind == "digest"


def test_a_digest_is_split_at_digest_max_alerts() -> None:
    relay = Planner(digest_max_alerts=2)
    for container in ("a", "b", "c"):
        relay.post(notification(alert("HighCpu", container, "warning")))
    relay.run(1.0)
    assert [len(mail.entries) for _, mail in relay.mails] == [2, 1]


def test_resolved_notifications_are_dropped_when_switched_off() -> None:
    relay = Planner(send_resolved=False)
    relay.post(notification(alert(status="resolved")))
    relay.post(notification(alert(status="resolved", severity="warning", container="db")))
    relay.run(1.0)
    assert relay.mails == []
    assert relay.suppressed == {"resolved_disabled": 2}
    assert relay.buffered == []
