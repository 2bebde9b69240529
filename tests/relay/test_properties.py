"""Property-based tests: arbitrary label and annotation values (line feeds, control characters,
lone surrogates, HTML, huge strings) thrown at parsing, planning and composing.

Whatever an alert says, parsing either accepts it or says why (PayloadError), composing always
gives a well-formed mail whose headers are the relay's own, and planning accounts for every alert
exactly once and mails the state that is true last.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockpulse_relay.compose.message import compose
from dockpulse_relay.intake.payload import PayloadError, parse_notification
from dockpulse_relay.model import Alert, BufferedAlert, Cooldown, Entry, MailPlan, event_time_text
from dockpulse_relay.plan.rules import plan_mails
from testkit.mail import parse

HEADERS = {"Subject", "From", "To", "Date", "Message-ID", "X-Dockpulse-Kind"}
HOSTILE = st.sampled_from(
    [
        "\r\nBcc: victim@example.com",
        "\nSubject: injected",
        "<script>alert(1)</script>",
        "\x00\x1b[31m\x7f",
        "\u2028\u2029\x85",
        "\ud800",  # a lone surrogate: valid JSON, not UTF-8
        "=?utf-8?b?SGk=?=",
        "é" * 300,
    ]
)
TEXT = st.one_of(st.text(max_size=300), HOSTILE, st.lists(HOSTILE).map("".join))
# Any label set, always with a container name (it goes into the subject) and a summary.
LABELS = st.builds(
    lambda extra, name, summary: {**extra, "name": name, "summary": summary},
    st.dictionaries(st.text(min_size=1, max_size=20), TEXT, max_size=4),
    TEXT,
    TEXT,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def webhook_alert(labels: dict[str, str], annotations: dict[str, str], status: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "ContainerDown", **labels},
        "annotations": annotations,
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "2024-05-01T10:05:00Z",
        "generatorURL": annotations.get("url", "http://prometheus:9090/graph?g0.expr=up"),
    }


@given(st.lists(st.tuples(LABELS, LABELS, st.sampled_from(["firing", "resolved"])), max_size=4))
@SETTINGS
def test_parsing_accepts_any_label_text(alerts) -> None:
    body = json.dumps(
        {"version": "4", "status": "firing", "alerts": [webhook_alert(*a) for a in alerts]}
    ).encode()
    parsed = parse_notification(body)
    assert len(parsed) == len(alerts)
    for alert in parsed:
        assert Alert.from_json(alert.to_json()) == alert  # what the store keeps comes back


@given(st.binary(max_size=200))
@SETTINGS
def test_parsing_anything_else_is_a_payload_error(body: bytes) -> None:
    try:
        parse_notification(body)
    except PayloadError as exc:
        assert str(exc)


def make_alert(labels: dict[str, str], annotations: dict[str, str], status: str) -> Alert:
    body = json.dumps(
        {
            "version": "4",
            "status": status,
            "alerts": [webhook_alert(labels, annotations, status)],
            "externalURL": "http://alertmanager:9093",  # silence links from any label text
        }
    )
    return parse_notification(body.encode())[0]


@given(
    st.lists(
        st.tuples(LABELS, LABELS, st.sampled_from(["firing", "resolved"])), min_size=1, max_size=4
    ),
    st.booleans(),
)
@SETTINGS
def test_composing_any_alert_gives_a_clean_mail(alerts, held: bool) -> None:
    entries = [
        Entry(alert, [number], 0.0, [alert, alert] if held else [alert], held)
        for number, alert in enumerate(make_alert(*a) for a in alerts)
    ]
    resolved = entries[-1].alert.status == "resolved"
    plan = MailPlan("resolved" if resolved else "critical", "critical", resolved, entries)
    mail = compose(plan, "relay@example.com", ["ops@example.com"], "http://prom:9090", 0.0)

    head, _, _ = mail.message.partition(b"\r\n\r\n")
    names = {
        line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if line[:1] not in b" \t"
    }
    assert names == HEADERS | {"Content-Type", "MIME-Version"}, "no header from alert content"
    message = parse(mail.message)
    subject = str(message["Subject"])
    assert "\n" not in subject and "\r" not in subject
    assert len(subject) <= 180
    assert message["Bcc"] is None
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "ContainerDown" in text
    if any(entry.alert.status == "firing" for entry in entries):  # the links, with any labels
        assert "Silence this alert: http://alertmanager:9093/#/silences/new?filter=" in text


START = datetime(2024, 5, 1, 10, tzinfo=UTC)
CHANGE = st.tuples(
    st.sampled_from(["a", "b", "c"]),  # fingerprint
    st.sampled_from(["firing", "resolved"]),
    st.integers(0, 50),  # minute of the change
    st.booleans(),  # critical
    st.booleans(),  # held already
    st.floats(0, 100),  # received, seconds ago
)


def buffered_alert(number: int, change: tuple) -> BufferedAlert:
    fingerprint, status, minute, critical, held, age = change
    starts = (START + timedelta(minutes=minute)).isoformat()
    ends = (START + timedelta(minutes=minute + 1)).isoformat() if status == "resolved" else ""
    alert = Alert(
        fingerprint, status, starts, ends, "ContainerDown",
        "critical" if critical else "warning", fingerprint, {}, {}, "",
    )  # fmt: skip
    return BufferedAlert(number, alert, 1000.0 - age, held)


@given(
    st.lists(CHANGE, max_size=25),
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.tuples(st.floats(900, 1000), st.sampled_from(["firing", "resolved"]), st.booleans()),
    ),
    st.booleans(),
    st.floats(1, 300),
)
@SETTINGS
def test_planning_accounts_for_every_alert_once_and_mails_the_latest_state(
    changes, cooldowns, send_resolved: bool, cooldown: float
) -> None:
    buffered = [buffered_alert(number, change) for number, change in enumerate(changes)]
    plan = plan_mails(
        buffered,
        {fp: Cooldown(*values) for fp, values in cooldowns.items()},
        1000.0,
        buffer_timeout=10.0,
        alert_cooldown=cooldown,
        send_resolved=send_resolved,
        digest_max_alerts=3,
    )
    mailed = [i for mail in plan.mails for entry in mail.entries for i in entry.ids]
    suppressed = [i for ids in plan.suppressed.values() for i in ids]
    decided = mailed + suppressed + list(plan.held)
    assert len(decided) == len(set(decided)), "an alert is in two places"
    waiting = {item.id for item in buffered} - set(decided)
    for item in buffered:
        if item.id in waiting:  # only fresh warnings within their buffer time may wait
            assert not item.held and not item.alert.critical
    for mail in plan.mails:
        assert 1 <= len(mail.entries) <= 3
        for entry in mail.entries:
            ids = set(entry.ids)
            latest = max(
                (item for item in buffered if item.id in ids),
                key=lambda item: (event_time_text(item.alert), item.received_at, item.id),
            )
            assert entry.alert == latest.alert, "the mail must tell the state that is true now"
            assert mail.resolved == (entry.alert.status == "resolved")
            fingerprints = {item.alert.fingerprint for item in buffered if item.id in ids}
            assert fingerprints == {entry.alert.fingerprint}
    assert not suppressed or not send_resolved
