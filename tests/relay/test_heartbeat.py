"""The dead man's switch: when the Watchdog heartbeat stops, the relay mails "monitoring is
blind", again every BLIND_REPEAT while it lasts, and "monitoring is back" when it returns
(HEARTBEAT_TIMEOUT 2 s here)."""

from __future__ import annotations

import time

from testkit.helpers import value, wait_until
from tests.relay.payloads import watchdog

TIMEOUT = 2.0


def beat(relay, evaluated_at: float | None = None) -> None:
    reply = relay.post(watchdog(time.time() if evaluated_at is None else evaluated_at),
                       path="/heartbeat")  # fmt: skip
    assert reply.status_code == 200, reply.text


def beat_for(relay, seconds: float, evaluated_at: float | None = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        beat(relay, evaluated_at)
        time.sleep(0.2)


def subjects(relay) -> list[str]:
    return [mail["Subject"] for mail in relay.mails()]


def test_blind_once_when_the_heartbeat_stops_and_back_when_it_returns(start_relay) -> None:
    relay = start_relay(HEARTBEAT_TIMEOUT=f"{TIMEOUT}s")
    time.sleep(2 * TIMEOUT)
    assert relay.mails() == [], "no heartbeat ever: not watched (no Watchdog route configured)"

    beat_for(relay, 2 * TIMEOUT)  # heartbeats keep coming: nothing to say
    assert relay.mails() == []
    assert value(relay.metrics(), "dockpulse_relay_heartbeat_age_seconds") < TIMEOUT

    stopped = time.monotonic()  # Prometheus or Alertmanager died
    mails = wait_until(relay.mails, timeout=10, interval=0.05)
    print(f"blind mail {time.monotonic() - stopped:.1f}s after the last heartbeat")
    assert mails[0]["Subject"].startswith(
        "[CRITICAL] Monitoring is blind: no heartbeat from Prometheus/Alertmanager for"
    )
    assert mails[0]["X-Dockpulse-Kind"] == "heartbeat"
    time.sleep(2 * TIMEOUT)
    assert len(relay.mails()) == 1, "blind is mailed once"
    assert value(relay.metrics(), "dockpulse_relay_monitoring_blind") == 1

    beat(relay)
    mails = wait_until(lambda: len(relay.mails()) == 2 and relay.mails(), timeout=10)
    assert mails[1]["Subject"] == (
        "[RESOLVED] Monitoring is back: the Watchdog heartbeat arrives again"
    )
    assert value(relay.metrics(), "dockpulse_relay_monitoring_blind") == 0


def test_alertmanager_repeating_a_stale_watchdog_is_no_heartbeat(start_relay) -> None:
    """Prometheus died; Alertmanager keeps repeating the Watchdog it knows (for up to 4 x its
    resend delay). The evaluation time in it stops moving: blind all the same."""
    relay = start_relay(HEARTBEAT_TIMEOUT=f"{TIMEOUT}s")
    frozen = time.time()
    beat_for(relay, 3 * TIMEOUT, evaluated_at=frozen)
    assert "Monitoring is blind" in wait_until(lambda: subjects(relay), timeout=5)[0]
    # A resolved Watchdog (Alertmanager gave up on it) is no heartbeat either.
    resolved = relay.post(watchdog(time.time(), status="resolved"), path="/heartbeat")
    assert "ignored" in resolved.json()["status"]
    time.sleep(2 * TIMEOUT)
    assert len(relay.mails()) == 1


def test_a_relay_restart_while_blind_says_nothing_new(start_relay) -> None:
    relay = start_relay(HEARTBEAT_TIMEOUT=f"{TIMEOUT}s")
    beat(relay)
    wait_until(lambda: subjects(relay), timeout=10)
    relay.restart()
    time.sleep(2 * TIMEOUT)
    assert len(relay.mails()) == 1, "no false 'back', no second 'blind'"
    beat(relay)
    back = wait_until(lambda: len(relay.mails()) == 2 and subjects(relay))[1]
    assert "Monitoring is back" in back


def test_blind_is_mailed_again_every_blind_repeat_until_the_heartbeat_returns(
    start_relay,
) -> None:
    """A blind alert path cannot stay quiet for good (BLIND_REPEAT 1.5 s here, 4 h shipped)."""
    relay = start_relay(HEARTBEAT_TIMEOUT="1s", BLIND_REPEAT="1500ms")
    beat(relay)

    def blind_mails() -> list[str]:
        return [s for s in subjects(relay) if s.startswith("[CRITICAL] Monitoring is blind")]

    wait_until(lambda: len(blind_mails()) >= 2, timeout=15, interval=0.05)
    written = sorted(path.stat().st_mtime for path in (relay.folder / "outbox").glob("*.eml"))
    assert written[1] - written[0] >= 0.75, "repeated after BLIND_REPEAT, not at once"
    assert (
        "repeated every 0m01s (BLIND_REPEAT)"
        in relay.mails()[-1].get_body(("plain",)).get_content()
    )

    beat(relay)
    wait_until(lambda: subjects(relay)[-1].startswith("[RESOLVED] Monitoring is back"), timeout=10)
    repeats = len(blind_mails())
    beat_for(relay, 2.0)  # longer than BLIND_REPEAT, heartbeats coming: no repeat
    assert len(blind_mails()) == repeats
