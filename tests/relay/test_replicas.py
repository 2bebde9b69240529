"""Relay replicas sharing one PostgreSQL database: each alert is mailed once across them, however
many of them Alertmanager posts it to; and the database going away is a 503 (Alertmanager
retries), never a lost alert. The burst with a replica killed: tests/scale/test_proof.py.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from dockpulse_relay.store.open import describe_store
from testkit.helpers import value, wait_until
from testkit.mail import text_of
from testkit.postgres import PostgresServer
from tests.relay.payloads import alert, notification

pytestmark = pytest.mark.postgresql_only
CONTAINER = re.compile(r"^Container:\s+(\S+)", re.MULTILINE)


def mailed(*relays) -> Counter[str]:
    """Mails per container across the replicas' outboxes (a digest names several)."""
    texts = [text_of(mail) for relay in relays for mail in relay.mails()]
    return Counter(name for text in texts for name in CONTAINER.findall(text))


def test_two_replicas_mail_each_alert_once(start_relay, relay_store, tmp_path) -> None:
    database = relay_store(tmp_path / "shared")
    first = start_relay(RELAY_STORE=database)
    second = start_relay(RELAY_STORE=database)
    critical = [notification(alert("ContainerDown", f"down{n}")) for n in range(100)]
    warnings = [notification(alert("HighCpu", f"busy{n}", "warning")) for n in range(20)]

    def post_to_both(numbered: tuple[int, dict[str, object]]) -> list[int]:
        number, payload = numbered
        replicas = (first, second) if number % 2 else (second, first)  # each is first for half
        return [relay.post(payload).status_code for relay in replicas]

    with ThreadPoolExecutor(8) as pool:  # both Alertmanager peers, posting at the same time
        codes = list(pool.map(post_to_both, enumerate(critical + warnings)))
    assert {code for pair in codes for code in pair} == {200}

    expected = {f"down{n}" for n in range(100)} | {f"busy{n}" for n in range(20)}
    wait_until(lambda: set(mailed(first, second)) >= expected, timeout=30)
    wait_until(
        lambda: all(
            value(relay.metrics(), "dockpulse_relay_queue_depth", queue=queue) == 0
            for relay in (first, second)
            for queue in ("buffered_alerts", "pending_mails")
        )
    )
    counts = mailed(first, second)
    assert set(counts) == expected
    assert [name for name, count in counts.items() if count > 1] == []
    duplicates = sum(
        value(relay.metrics(), "dockpulse_relay_alerts_deduplicated_total")
        for relay in (first, second)
    )
    assert duplicates == len(expected)  # every alert's second copy, whichever replica got it


def test_the_database_away_is_a_503_and_nothing_is_lost(start_relay) -> None:
    with PostgresServer() as server:
        relay = start_relay(RELAY_STORE=server.create_database())
        assert relay.post(notification(alert("ContainerDown", "before"))).status_code == 200
        wait_until(lambda: "before" in mailed(relay))

        server.stop()
        refused = relay.post(notification(alert("ContainerDown", "during")))
        assert refused.status_code == 503
        assert requests.get(f"{relay.url}/healthz", timeout=5).status_code == 503
        assert value(relay.metrics(), "dockpulse_relay_store_up") == 0

        server.start()  # Alertmanager keeps retrying what got a 503
        wait_until(
            lambda: relay.post(notification(alert("ContainerDown", "during"))).status_code == 200
        )
        wait_until(lambda: "during" in mailed(relay))
        assert mailed(relay) == Counter({"before": 1, "during": 1})


def test_logs_and_messages_never_show_the_database_password() -> None:
    url = "postgresql://relay:s3cret@db.lan:5432/relay?sslmode=require"
    assert describe_store(url) == "postgresql://relay:***@db.lan:5432/relay?sslmode=require"
    assert describe_store("postgresql://relay@db.lan/relay") == "postgresql://relay@db.lan/relay"
