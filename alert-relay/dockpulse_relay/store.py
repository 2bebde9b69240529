"""The durable queue: received alerts, composed mails and cooldown times in one SQLite file.

Why SQLite in WAL mode with `synchronous=NORMAL` and one writer connection: a webhook is answered
2xx only after its transaction has committed. In WAL mode a commit is an append to the `-wal`
file; with NORMAL it is not fsync'ed per commit, so it costs tens of microseconds instead of a
disk flush, yet it is in the kernel's page cache the moment `COMMIT` returns and survives the
relay being killed (kill -9, OOM, crash). Only a power loss or kernel panic can lose the last
commits; `store_sync: full` closes that gap at the price of one fsync per notification. One
connection behind a lock keeps writers from ever waiting on SQLite's own busy locking.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockpulse_relay.alerts import Alert

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,          -- fingerprint|status|startsAt
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL,
    critical    INTEGER NOT NULL,              -- 1: bypasses the digest buffer
    received_at REAL NOT NULL,
    alert       TEXT NOT NULL,                 -- the Alert as JSON
    state       TEXT NOT NULL DEFAULT 'buffered',  -- buffered | mailed | suppressed
    mail_id     INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_buffered ON alerts(critical, received_at)
    WHERE state = 'buffered';
CREATE TABLE IF NOT EXISTS mails (
    id               INTEGER PRIMARY KEY,
    message_id       TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,            -- critical | digest | resolved
    subject          TEXT NOT NULL,
    message          BLOB NOT NULL,            -- the whole RFC 5322 message
    first_received_at REAL NOT NULL,
    created_at       REAL NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_error       TEXT,
    sent_at          REAL
);
CREATE INDEX IF NOT EXISTS mails_pending ON mails(next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS last_mailed (
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL,
    mailed_at   REAL NOT NULL,
    PRIMARY KEY (fingerprint, status)
);
"""


class StoreError(RuntimeError):
    """The store cannot be read or written (disk full, read-only, missing folder...)."""


@dataclass(frozen=True)
class BufferedAlert:
    id: int
    alert: Alert
    received_at: float


@dataclass(frozen=True)
class NewMail:
    """A composed mail and the alerts it carries, committed together."""

    message_id: str
    kind: str
    subject: str
    message: bytes
    alert_ids: list[int]
    first_received_at: float
    cooldown_keys: list[tuple[str, str]]


@dataclass(frozen=True)
class QueuedMail:
    id: int
    message_id: str
    kind: str
    subject: str
    message: bytes
    first_received_at: float
    attempts: int


class Store:
    """All reads and writes go through one connection, one transaction at a time."""

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self.synchronous}")
                db.execute("PRAGMA busy_timeout=5000")
                db.executescript(SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; on any error roll back, so nothing is half-stored."""
        with self._lock:
            try:
                db = self._connect()
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._reset(db)
                raise StoreError(f"{self.path}: {exc}") from exc
            except BaseException:
                self._reset(db)
                raise

    def _reset(self, db: sqlite3.Connection) -> None:
        """Roll back, and reopen next time: the file may have been fixed or replaced."""
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        db.close()
        self._db = None

    def check(self) -> None:
        """Raise StoreError unless the store can be opened and read."""
        with self._transaction() as db:
            db.execute("SELECT count(*) FROM mails WHERE 0").fetchone()

    def record(self, alerts: Iterable[Alert], now: float) -> list[bool]:
        """Store new alerts durably; for each, False when it was already there (a duplicate)."""
        fresh = []
        with self._transaction() as db:
            for alert in alerts:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO alerts"
                    " (key, fingerprint, status, critical, received_at, alert)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        alert.key,
                        alert.fingerprint,
                        alert.status,
                        alert.critical,
                        now,
                        alert.to_json(),
                    ),
                )
                fresh.append(cursor.rowcount == 1)
        return fresh

    def buffered(self, warnings_received_before: float) -> list[BufferedAlert]:
        """Buffered critical alerts, plus all warnings once the oldest is from before the time.

        Cheap when nothing is due: the digest is only read when it is about to go out.
        """
        with self._transaction() as db:
            oldest = db.execute(
                "SELECT min(received_at) FROM alerts WHERE state = 'buffered' AND critical = 0"
            ).fetchone()[0]
            warnings_due = oldest is not None and oldest <= warnings_received_before
            rows = db.execute(
                "SELECT id, alert, received_at FROM alerts WHERE state = 'buffered'"
                " AND critical >= ? ORDER BY received_at, id",
                (0 if warnings_due else 1,),
            ).fetchall()
        return [BufferedAlert(row[0], Alert.from_json(row[1]), row[2]) for row in rows]

    def last_mailed(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """When each (fingerprint, status) was last mailed, for those that were."""
        found = {}
        with self._transaction() as db:
            for key in set(keys):
                row = db.execute(
                    "SELECT mailed_at FROM last_mailed WHERE fingerprint = ? AND status = ?", key
                ).fetchone()
                if row is not None:
                    found[key] = row[0]
        return found

    def enqueue(self, mails: list[NewMail], suppressed: list[int], now: float) -> None:
        """Turn buffered alerts into queued mails (or drop them) in one transaction."""
        with self._transaction() as db:
            for mail in mails:
                cursor = db.execute(
                    "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
                    " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (mail.message_id, mail.kind, mail.subject, mail.message,
                     mail.first_received_at, now, now),
                )  # fmt: skip
                db.executemany(
                    "UPDATE alerts SET state = 'mailed', mail_id = ? WHERE id = ?",
                    [(cursor.lastrowid, alert_id) for alert_id in mail.alert_ids],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO last_mailed (fingerprint, status, mailed_at)"
                    " VALUES (?, ?, ?)",
                    [(fingerprint, status, now) for fingerprint, status in mail.cooldown_keys],
                )
            db.executemany(
                "UPDATE alerts SET state = 'suppressed' WHERE id = ?",
                [(alert_id,) for alert_id in suppressed],
            )

    def due_mails(self, now: float) -> list[QueuedMail]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, message_id, kind, subject, message, first_received_at, attempts"
                " FROM mails WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id",
                (now,),
            ).fetchall()
        return [QueuedMail(*row) for row in rows]

    def next_attempt_at(self) -> float | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT min(next_attempt_at) FROM mails WHERE state = 'pending'"
            ).fetchone()
        return row[0]

    def mark_sent(self, mail_id: int, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET state = 'sent', sent_at = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (now, mail_id),
            )

    def mark_retry(self, mail_id: int, next_attempt_at: float, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                (next_attempt_at, error, mail_id),
            )

    def mark_dead(self, mail_id: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET state = 'dead', attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (error, mail_id),
            )

    def depth(self) -> dict[str, int]:
        """Queue depth: alerts waiting in the buffer, mails waiting for delivery."""
        with self._transaction() as db:
            alerts = db.execute("SELECT count(*) FROM alerts WHERE state = 'buffered'").fetchone()
            mails = db.execute("SELECT count(*) FROM mails WHERE state = 'pending'").fetchone()
        return {"buffered_alerts": alerts[0], "pending_mails": mails[0]}

    def purge(self, before: float) -> None:
        """Forget alerts and finished mails older than `before` (the dedup memory ends there)."""
        with self._transaction() as db:
            for statement in (
                "DELETE FROM alerts WHERE state != 'buffered' AND received_at < ?",
                "DELETE FROM mails WHERE state != 'pending' AND created_at < ?",
                "DELETE FROM last_mailed WHERE mailed_at < ?",
            ):
                db.execute(statement, (before,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
