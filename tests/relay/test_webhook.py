"""The webhook's contract: auth, payload checks, size limit, durability, dedup, store failures."""

from __future__ import annotations

import json
import resource
import sqlite3

import pytest
import requests

from testkit.helpers import value, wait_for_samples, wait_until
from testkit.mail import text_of
from tests.relay.payloads import alert, notification


@pytest.mark.sqlite_only
def test_refuses_what_is_not_an_authenticated_alertmanager_notification(start_relay) -> None:
    relay = start_relay(RELAY_MAX_BODY_BYTES="4096")
    good = notification(alert())
    assert relay.post(good, token=None).status_code == 401
    assert relay.post(good, token="wrong").status_code == 401
    assert relay.post(b'{"version": "4", "alerts": [').status_code == 400
    assert relay.post({"text": "hello"}).status_code == 400  # a Slack-style payload
    assert relay.post({**good, "version": "3"}).status_code == 400
    bad_alert = notification({**alert(), "status": "pending"})
    reply = relay.post(bad_alert)
    assert reply.status_code == 400
    assert "alerts.0.status" in reply.json()["error"]
    big = notification(alert(description="x" * 5000))
    assert relay.post(big).status_code == 413

    samples = relay.metrics()
    assert value(samples, "dockpulse_relay_alerts_queued_total") == 0
    assert value(samples, "dockpulse_relay_webhook_requests_total", code="401") == 2
    assert value(samples, "dockpulse_relay_webhook_requests_total", code="400") == 4
    assert value(samples, "dockpulse_relay_webhook_requests_total", code="413") == 1
    assert relay.alert_log_entries() == []
    # Unknown fields are tolerated, and the relay still works after all that.
    extra = {**good, "newField": {"x": 1}, "alerts": [{**alert(), "silencedBy": []}]}
    assert relay.post(extra).status_code == 200
    wait_until(relay.mails)


def test_a_redelivered_alert_is_mailed_once(start_relay) -> None:
    relay = start_relay()
    payload = notification(alert("ContainerDown", "webapp"))
    replies = [relay.post(payload) for _ in range(3)]
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert replies[2].json()["duplicates"] == 1

    mails = wait_until(relay.mails)
    assert mails[0]["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    relay.post(payload)
    samples = wait_for_samples(
        relay.metrics, lambda s: value(s, "dockpulse_relay_queue_depth", queue="pending_mails") == 0
    )
    assert len(relay.mails()) == 1
    assert value(samples, "dockpulse_relay_alerts_deduplicated_total") == 3
    assert value(samples, "dockpulse_relay_alerts_queued_total") == 1
    assert value(samples, "dockpulse_relay_mails_sent_total", kind="critical") == 1
    log = relay.alert_log_entries()
    assert [line["duplicate"] for line in log] == [False, True, True, True]
    assert log[0]["alertname"] == "ContainerDown"
    assert log[0]["container"] == "webapp"


@pytest.mark.sqlite_only
def test_the_mail_is_multipart_with_value_start_and_prometheus_link(start_relay) -> None:
    relay = start_relay(PROMETHEUS_URL="http://prometheus.example:9090")
    relay.post(notification(alert(value="97.5", runbook="docker start webapp")))
    mail = wait_until(relay.mails)[0]
    assert mail.get_content_type() == "multipart/alternative"
    text = text_of(mail)
    html = mail.get_body(preferencelist=("html",)).get_content()
    for part in (text, html):
        assert "97.5" in part
        assert "2024-05-01T10:00:00" in part
        assert "http://prometheus.example:9090/graph?g0.expr=container_up" in part
        assert "docker start webapp" in part
    assert "<table" in html


@pytest.mark.sqlite_only
def test_answers_503_while_the_store_cannot_be_opened_then_recovers(start_relay, tmp_path) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the store's folder should be")
    relay = start_relay(RELAY_STORE=str(blocker / "relay.db"))
    assert relay.post(notification(alert())).status_code == 503
    assert relay.metrics() and value(relay.metrics(), "dockpulse_relay_store_up") == 0
    assert relay.alert_log_entries() == []  # nothing logged for what was not stored

    blocker.unlink()  # the operator fixes the volume; Alertmanager retries
    assert relay.post(notification(alert())).status_code == 200
    assert wait_until(relay.mails)[0]["Subject"].startswith("[CRITICAL]")


@pytest.mark.sqlite_only
def test_a_full_disk_answers_5xx_and_stores_nothing_half(start_relay) -> None:
    """RLIMIT_FSIZE makes the relay's writes fail with EFBIG, like a full disk (even as root)."""
    relay = start_relay(BUFFER_TIMEOUT="1h")
    assert relay.post(notification(alert(severity="warning"))).status_code == 200
    wal = relay.folder / "relay.db-wal"
    limit = wal.stat().st_size + 64 * 1024
    infinity = resource.RLIM_INFINITY
    resource.prlimit(relay.process.pid, resource.RLIMIT_FSIZE, (limit, infinity))
    acknowledged, refused = {"ContainerDown/webapp"}, set()
    for number in range(200):
        names = [f"c{number}-{i}" for i in range(5)]
        payload = notification(*(alert("HighCpu", name, "warning") for name in names))
        status = relay.post(payload).status_code
        assert status in (200, 503)
        (acknowledged if status == 200 else refused).update(f"HighCpu/{n}" for n in names)
        if refused:
            break
    assert refused, "the size limit was never hit"
    assert requests.get(f"{relay.url}/metrics", timeout=5).status_code == 200  # it lives on

    resource.prlimit(relay.process.pid, resource.RLIMIT_FSIZE, (infinity, infinity))
    recovered = notification(alert("HighCpu", "after", "warning"))
    assert relay.post(recovered).status_code == 200  # room again: stored again
    acknowledged.add("HighCpu/after")
    relay.stop()
    with sqlite3.connect(relay.folder / "relay.db") as db:
        stored = [json.loads(row[0]) for row in db.execute("SELECT alert FROM alerts")]
    assert {f"{item['alertname']}/{item['container']}" for item in stored} == acknowledged
