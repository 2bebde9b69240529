"""Alertmanager as a cluster on real components: two real Alertmanager peers gossiping on
127.0.0.1, each with the shipped alertmanager.yml, one Prometheus sending every alert to both (the
shipped `alerting` section with both peers), and a local webhook receiver counting notifications.

The peers agree on who notifies (one notification per alert, not one per peer), share a silence
made on either, and when the notifying peer is killed (kill -9) halfway, the other still notifies
new alerts.
Test timing: `--cluster.peer-timeout=3s` (15 s shipped), the wait of the second peer before it
notifies in place of the first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from testkit.helpers import wait_until
from testkit.local_stack import PROMETHEUS_DIR, LocalStack, Service
from testkit.switchboard import (
    Switchboard,
    alertmanager_cluster,
    switch_prometheus,
    switchboard,
)

PEER_TIMEOUT = 3.0


def alerts_on(alertmanager: Service, **filters: str) -> list[dict[str, Any]]:
    matchers = [f'{label}="{value}"' for label, value in filters.items()]
    answer = requests.get(
        f"{alertmanager.url}/api/v2/alerts", params={"filter": matchers}, timeout=5
    )
    answer.raise_for_status()
    return answer.json()


def silence_ids(alertmanager: Service) -> set[str]:
    answer = requests.get(f"{alertmanager.url}/api/v2/silences", timeout=5).json()
    return {silence["id"] for silence in answer if silence["status"]["state"] == "active"}


@pytest.fixture
def board() -> Iterator[Switchboard]:
    with switchboard() as running:
        yield running


def test_two_peers_notify_once_share_silences_and_survive_one_killed(
    tmp_path: Path, board: Switchboard
) -> None:
    with LocalStack(tmp_path) as stack:
        peers = alertmanager_cluster(
            stack, board.url, 2, (f"--cluster.peer-timeout={PEER_TIMEOUT:.0f}s",)
        )
        shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        assert len(shipped["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]) == 2
        prometheus = switch_prometheus(stack, board, peers)

        # An alert fires: both peers have it from Prometheus, one of them notifies.
        board.switch_on("a")
        (first_notification, *_) = wait_until(lambda: board.firing("a"), timeout=30)
        for peer in peers:
            wait_until(lambda peer=peer: alerts_on(peer, case="a"), timeout=10)
        sender = first_notification.sender.rstrip("/")
        (notifier,) = [peer for peer in peers if sender.endswith(f":{peer.port}")]
        (survivor,) = [peer for peer in peers if peer is not notifier]

        # A silence made on the notifying peer reaches the other by gossip.
        now = datetime.now(UTC)
        silence = {
            "matchers": [{"name": "case", "value": "c", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "test",
            "comment": "made on the notifying peer",
        }
        answer = requests.post(f"{notifier.url}/api/v2/silences", json=silence, timeout=5)
        answer.raise_for_status()
        silence_id = answer.json()["silenceID"]
        wait_until(lambda: silence_id in silence_ids(survivor), timeout=10)

        # The other peer has had the peer timeout and more to send `a` too, had it not known.
        time.sleep(PEER_TIMEOUT + 2)
        a_notifications = board.firing("a")

        # Halfway: the peer that notifies dies; new alerts still come through the other, once
        # it has waited out the peer timeout (the dead peer is still a member for a while).
        notifier.process.kill()
        notifier.process.wait()
        killed_at = time.monotonic()
        board.switch_on("b", "c")
        (b_notification, *_) = wait_until(lambda: board.firing("b"), timeout=60)
        silenced = wait_until(
            lambda: [
                alert
                for alert in alerts_on(survivor, case="c")
                if alert["status"]["state"] == "suppressed"
            ],
            timeout=10,
        )
        time.sleep(2)
        c_notifications = board.firing("c")
        prometheus_alerts = requests.get(f"{prometheus.url}/api/v1/alerts", timeout=5).json()

    assert first_notification.authorization.startswith("Bearer ")  # the shipped receiver
    assert len(a_notifications) == 1, [n.sender for n in a_notifications]  # not one per peer
    assert b_notification.sender.rstrip("/").endswith(f":{survivor.port}")
    assert silenced[0]["status"]["silencedBy"] == [silence_id]
    assert c_notifications == []  # silenced on the dead peer, before it died
    firing = {
        alert["labels"]["case"]
        for alert in prometheus_alerts["data"]["alerts"]
        if alert["state"] == "firing"
    }
    assert firing == {"a", "b", "c"}
    takeover = b_notification.received_at - killed_at
    print(f"one peer killed -> the other notified a new alert after {takeover:.1f} s")
