"""Cooldown defers, never drops: changes inside ALERT_COOLDOWN are held and summed up in one
mail when it ends, and the last mail always tells the current state.

Alertmanager's behaviour is replayed by posting what it posts: a new `startsAt` for each new
firing, the same one for its repeats and for the resolved notification of that firing.
One relay-process test per rule (cooldown, flapping summary); the other cases of these rules run
on the pure planner with a fake clock, in milliseconds (test_plan_rules.py).
"""

from __future__ import annotations

import time

from testkit.helpers import value, wait_until
from testkit.mail import read_outbox, text_of
from tests.relay.payloads import down, up

COOLDOWN = 4.0
CHECK_INTERVAL = 0.2


def subjects(relay) -> list[str]:
    return [mail["Subject"] for mail in relay.mails()]


def test_a_second_outage_inside_the_cooldown_is_mailed_when_it_ends(start_relay) -> None:
    relay = start_relay(ALERT_COOLDOWN=f"{COOLDOWN}s", CHECK_INTERVAL=f"{CHECK_INTERVAL}s")
    relay.post(down(0))
    wait_until(lambda: len(relay.mails()) == 1, interval=0.05)
    relay.post(up(0))  # the first recovery after an outage mail goes at once
    wait_until(lambda: len(relay.mails()) == 2, interval=0.05)
    assert subjects(relay)[1].startswith("[RESOLVED] [CRITICAL]")

    relay.post(down(2))  # down again, inside the cooldown, and it stays down
    second_outage = time.monotonic()
    for _ in range(3):  # Alertmanager repeats it: the same key, a duplicate, never a new mail
        assert relay.post(down(2)).json()["duplicates"] == 1
    wait_until(lambda: value(relay.metrics(), "dockpulse_relay_alerts_held_total") == 1)

    mails = wait_until(lambda: len(relay.mails()) == 3 and relay.mails(), timeout=COOLDOWN + 15)
    waited = time.monotonic() - second_outage
    written = [mail.arrived for mail in read_outbox(relay.folder / "outbox")]
    assert written[2] - written[1] >= COOLDOWN - 0.5, "held while the cooldown lasted"
    last = mails[-1]
    assert last["Subject"].startswith("[FLAPPING down now] [CRITICAL] 1 alert: ContainerDown")
    assert "went down once, down now; came back 0 times" in text_of(last)
    print(f"second outage mailed {waited:.1f}s after it began (cooldown {COOLDOWN}s)")


def test_a_flapping_container_costs_one_mail_per_cooldown_and_the_last_tells_the_truth(
    start_relay,
) -> None:
    relay = start_relay(ALERT_COOLDOWN=f"{COOLDOWN}s", CHECK_INTERVAL=f"{CHECK_INTERVAL}s")
    relay.post(down(0))
    wait_until(lambda: len(relay.mails()) == 1)  # planned alone (together: one resolved mail)
    relay.post(up(0))
    wait_until(lambda: len(relay.mails()) == 2)
    for minute in range(2, 22, 2):  # 10 more times down and up, all inside the cooldown
        relay.post(down(minute))
        relay.post(up(minute))
    relay.post(down(30))  # and then it stays down
    mails = wait_until(lambda: len(relay.mails()) == 3 and relay.mails(), timeout=COOLDOWN + 15)
    summary = text_of(mails[2])
    assert mails[2]["Subject"].startswith("[FLAPPING down now] [CRITICAL]")
    assert "went down 11 times in 28 min, down now; came back 10 times" in summary
    assert "21 changes held back by the cooldown" in summary
    assert "first change 2024-05-01T10:02:00+00:00" in summary
    assert "last change 2024-05-01T10:30:00+00:00" in summary

    relay.post(up(30))  # recovered: the first recovery after a summary waits for the cooldown
    mails = wait_until(lambda: len(relay.mails()) == 4 and relay.mails(), timeout=COOLDOWN + 15)
    assert mails[3]["Subject"].startswith("[FLAPPING up now] [RESOLVED] [CRITICAL]")
    assert "up now (resolved)" in text_of(mails[3])
    samples = relay.metrics()
    assert value(samples, "dockpulse_relay_queue_depth", queue="held_alerts") == 0
    assert value(samples, "dockpulse_relay_queue_depth", queue="buffered_alerts") == 0
