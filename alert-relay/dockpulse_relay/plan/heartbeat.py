"""The dead man's switch: Prometheus' always-firing `Watchdog`, routed by Alertmanager to
`POST /heartbeat`, proves the whole alert path works. When it stops, the relay itself mails
"monitoring is blind", again every BLIND_REPEAT while it lasts (a blind alert path cannot stay
quiet for good), and "monitoring is back" when it returns.

Two clocks tell a heartbeat is stale: when the relay last received one (Alertmanager dead or
cut off), and the Prometheus evaluation time the Watchdog carries in its `evaluated_at`
annotation (Prometheus dead: Alertmanager keeps repeating the alert it knows for up to
4 x resend delay, so arrivals alone would hide it). Watching starts with the first heartbeat.
"""

from __future__ import annotations

from dockpulse_relay.model import Heartbeat


def last_sign_of_life(heartbeat: Heartbeat) -> float:
    """The older of the two clocks: both Alertmanager and Prometheus must be alive."""
    if heartbeat.evaluated_at is None:
        return heartbeat.received_at
    return min(heartbeat.received_at, heartbeat.evaluated_at)


def is_stale(heartbeat: Heartbeat, now: float, started_at: float, timeout: float) -> bool:
    """Blind after `timeout` without a sign of life; a relay restart gives the heartbeat a new
    `timeout` to arrive (no outage of its own), but "back" needs a fresh heartbeat."""
    last = last_sign_of_life(heartbeat)
    if not heartbeat.blind:
        last = max(last, started_at)
    return now - last > timeout
