"""A store written by the previous release (no held alerts, no mail priority, per-status
cooldowns) is upgraded in place: what it had buffered or queued still goes out."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from testkit.helpers import wait_until
from tests.relay.payloads import alert

# The previous release's schema, as it is in stores out there.
PREVIOUS_SCHEMA = """
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL, critical INTEGER NOT NULL, received_at REAL NOT NULL,
    alert TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'buffered', mail_id INTEGER
);
CREATE TABLE mails (
    id INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    subject TEXT NOT NULL, message BLOB NOT NULL, first_received_at REAL NOT NULL,
    created_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
    sent_at REAL
);
CREATE TABLE last_mailed (
    fingerprint TEXT NOT NULL, status TEXT NOT NULL, mailed_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, status)
);
"""


pytestmark = pytest.mark.sqlite_only  # the SQLite file of the previous release


def test_a_previous_store_is_upgraded_and_its_alerts_and_mails_go_out(start_relay, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    now = time.time()
    stored = {
        "fingerprint": "f1", "status": "firing", "starts_at": "2024-05-01T10:00:00+00:00",
        "ends_at": "", "alertname": "ContainerDown", "severity": "critical",
        "container": "legacy", "labels": alert()["labels"], "annotations": {},
        "generator_url": "",
    }  # fmt: skip
    message = b"Subject: queued before the upgrade\r\nX-Dockpulse-Kind: digest\r\n\r\nhello\r\n"
    with sqlite3.connect(folder / "relay.db") as db:
        db.executescript(PREVIOUS_SCHEMA)
        db.execute(
            "INSERT INTO alerts (key, fingerprint, status, critical, received_at, alert)"
            " VALUES (?, 'f1', 'firing', 1, ?, ?)",
            ("f1|firing|2024-05-01T10:00:00+00:00", now, json.dumps(stored)),
        )
        db.execute(
            "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
            " created_at, next_attempt_at) VALUES ('old-1', 'digest', 'queued', ?, ?, ?, ?)",
            (message, now, now, now),
        )
    relay = start_relay(folder)
    mails = wait_until(lambda: len(relay.mails()) == 2 and relay.mails())
    assert {mail["Subject"] for mail in mails} == {
        "queued before the upgrade",
        "[CRITICAL] 1 alert: ContainerDown (legacy)",
    }
