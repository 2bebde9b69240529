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
    state       TEXT NOT NULL DEFAULT 'buffered',  -- buffered | held | mailed | suppressed
    mail_id     INTEGER,
    due_at      REAL                           -- held: when its cooldown ends
);
CREATE INDEX IF NOT EXISTS alerts_buffered ON alerts(critical, received_at)
    WHERE state = 'buffered';
CREATE TABLE IF NOT EXISTS mails (
    id               INTEGER PRIMARY KEY,
    message_id       TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,            -- critical | digest | resolved | heartbeat
    subject          TEXT NOT NULL,
    message          BLOB NOT NULL,            -- the whole RFC 5322 message (empty: not composed)
    first_received_at REAL NOT NULL,
    created_at       REAL NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_error       TEXT,
    sent_at          REAL,
    priority         INTEGER NOT NULL DEFAULT 2  -- 0 critical first ... 3 resolved warnings
);
CREATE INDEX IF NOT EXISTS mails_pending ON mails(next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS cooldowns (
    fingerprint TEXT PRIMARY KEY,
    mailed_at   REAL NOT NULL,
    status      TEXT NOT NULL,                 -- what the last mail said
    summary     INTEGER NOT NULL               -- 1: it summed up held changes
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    received_at  REAL NOT NULL,                -- when the last heartbeat arrived
    evaluated_at REAL,                         -- Prometheus' time in it (None: unknown)
    blind        INTEGER NOT NULL DEFAULT 0    -- 1: "monitoring is blind" was queued
);
"""
# Columns added since the first release: (table, column, declaration) for older stores.
MIGRATIONS = [
    ("alerts", "due_at", "REAL"),
    ("mails", "priority", "INTEGER NOT NULL DEFAULT 2"),
]
HELD_INDEX = (
    "CREATE INDEX IF NOT EXISTS alerts_held ON alerts(fingerprint, due_at) WHERE state = 'held'"
)


WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024  # the log is cut back to this after a checkpoint


class StoreError(RuntimeError):
    """The store cannot be read or written (disk full, read-only, missing folder...)."""


@dataclass(frozen=True)
class BufferedAlert:
    id: int
    alert: Alert
    received_at: float
    held: bool = False  # held back by the cooldown (state held)


@dataclass(frozen=True)
class Cooldown:
    """The last mail about a fingerprint."""

    mailed_at: float
    status: str
    summary: bool


@dataclass(frozen=True)
class NewMail:
    """A composed mail and the alerts it carries, committed together."""

    message_id: str
    kind: str
    subject: str
    message: bytes
    alert_ids: list[int]
    first_received_at: float
    cooldown: list[tuple[str, str, bool]]  # (fingerprint, status, summary) it mails
    priority: int = 2
    error: str | None = None  # set: could not be composed, stored as a dead letter


@dataclass(frozen=True)
class QueuedMail:
    id: int
    message_id: str
    kind: str
    subject: str
    message: bytes
    first_received_at: float
    attempts: int
    priority: int = 2


@dataclass(frozen=True)
class DeadLetter:
    id: int
    message_id: str
    kind: str
    subject: str
    created_at: float
    attempts: int
    error: str


@dataclass(frozen=True)
class Heartbeat:
    received_at: float
    evaluated_at: float | None
    blind: bool


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
                db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
                db.executescript(SCHEMA)
                _migrate(db)
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
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    self._free_wal(db)
                self._reset(db)
                raise StoreError(f"{self.path}: {exc}") from exc
            except BaseException:
                self._reset(db)
                raise

    @staticmethod
    def _free_wal(db: sqlite3.Connection) -> None:
        """Disk full: give back what the write-ahead log holds beyond the database."""
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass

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

    def buffered(self, now: float, warnings_received_before: float) -> list[BufferedAlert]:
        """What planning looks at: buffered critical alerts, all buffered warnings once the
        oldest is from before the time, held alerts whose cooldown is over, and the held
        alerts of every fingerprint among those (so changes coalesce).

        Cheap when nothing is due: the digest is only read when it is about to go out.
        """
        with self._transaction() as db:
            oldest = db.execute(
                "SELECT min(received_at) FROM alerts WHERE state = 'buffered' AND critical = 0"
            ).fetchone()[0]
            warnings_due = oldest is not None and oldest <= warnings_received_before
            rows = db.execute(
                "SELECT id, alert, received_at, state FROM alerts WHERE (state = 'buffered'"
                " AND critical >= :critical) OR (state = 'held' AND (due_at <= :now"
                " OR fingerprint IN (SELECT fingerprint FROM alerts WHERE state = 'buffered'"
                " AND critical >= :critical))) ORDER BY received_at, id",
                {"critical": 0 if warnings_due else 1, "now": now},
            ).fetchall()
        return [
            BufferedAlert(row[0], Alert.from_json(row[1]), row[2], row[3] == "held") for row in rows
        ]

    def cooldowns(self, fingerprints: Iterable[str]) -> dict[str, Cooldown]:
        """The last mail about each fingerprint, for those mailed."""
        found = {}
        with self._transaction() as db:
            for fingerprint in set(fingerprints):
                row = db.execute(
                    "SELECT mailed_at, status, summary FROM cooldowns WHERE fingerprint = ?",
                    (fingerprint,),
                ).fetchone()
                if row is not None:
                    found[fingerprint] = Cooldown(row[0], row[1], bool(row[2]))
        return found

    def enqueue(
        self,
        mails: list[NewMail],
        suppressed: list[int],
        now: float,
        held: dict[int, float] | None = None,
    ) -> None:
        """Turn buffered alerts into queued mails, held or dropped ones, in one transaction.

        A mail with an `error` could not be composed: it is stored as a dead letter at once,
        its alerts attached, so `dead-letters requeue` can plan them again.
        """
        with self._transaction() as db:
            for mail in mails:
                cursor = db.execute(
                    "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
                    " created_at, next_attempt_at, priority, state, last_error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (mail.message_id, mail.kind, mail.subject, mail.message,
                     mail.first_received_at, now, now, mail.priority,
                     "dead" if mail.error else "pending", mail.error),
                )  # fmt: skip
                db.executemany(
                    "UPDATE alerts SET state = 'mailed', mail_id = ?, due_at = NULL WHERE id = ?",
                    [(cursor.lastrowid, alert_id) for alert_id in mail.alert_ids],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO cooldowns (fingerprint, mailed_at, status, summary)"
                    " VALUES (?, ?, ?, ?)",
                    [(fp, now, status, summary) for fp, status, summary in mail.cooldown],
                )
            db.executemany(
                "UPDATE alerts SET state = 'suppressed' WHERE id = ?",
                [(alert_id,) for alert_id in suppressed],
            )
            db.executemany(
                "UPDATE alerts SET state = 'held', due_at = ? WHERE id = ?",
                [(due_at, alert_id) for alert_id, due_at in (held or {}).items()],
            )

    def add_mail(self, mail: NewMail, now: float) -> None:
        """Queue a mail that carries no alert (the relay's own: monitoring blind/back)."""
        self.enqueue([mail], [], now)

    def next_due(self, now: float, priorities: tuple[int, int]) -> QueuedMail | None:
        """The most urgent mail due now whose priority is within `priorities` (low, high)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, message_id, kind, subject, message, first_received_at, attempts,"
                " priority FROM mails WHERE state = 'pending' AND next_attempt_at <= ?"
                " AND priority BETWEEN ? AND ? ORDER BY priority, id LIMIT 1",
                (now, *priorities),
            ).fetchone()
        return None if row is None else QueuedMail(*row)

    def next_attempt_at(self, priorities: tuple[int, int] = (0, 99)) -> float | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT min(next_attempt_at) FROM mails WHERE state = 'pending'"
                " AND priority BETWEEN ? AND ?",
                priorities,
            ).fetchone()
        return row[0]

    def oldest_pending_created_at(self) -> float | None:
        with self._transaction() as db:
            return db.execute(
                "SELECT min(created_at) FROM mails WHERE state = 'pending'"
            ).fetchone()[0]

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

    def retry_all_now(self, now: float) -> None:
        """The backend works again: every backed-off mail is due now."""
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET next_attempt_at = ? WHERE state = 'pending'"
                " AND next_attempt_at > ?",
                (now, now),
            )

    def mark_dead(self, mail_id: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET state = 'dead', attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (error, mail_id),
            )

    def dead_letters(self) -> list[DeadLetter]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, message_id, kind, subject, created_at, attempts,"
                " coalesce(last_error, '') FROM mails WHERE state = 'dead' ORDER BY id"
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def requeue(self, mail_ids: Iterable[int] | None, now: float) -> int:
        """Dead letters back to work (all when `mail_ids` is None); how many.

        A composed one is queued again; one that could not be composed gives its alerts back
        to the buffer, to be planned (and composed) again.
        """
        with self._transaction() as db:
            if mail_ids is None:
                ids = [row[0] for row in db.execute("SELECT id FROM mails WHERE state = 'dead'")]
            else:
                ids = [
                    mail_id
                    for mail_id in mail_ids
                    if db.execute(
                        "SELECT 1 FROM mails WHERE id = ? AND state = 'dead'", (mail_id,)
                    ).fetchone()
                ]
            for mail_id in ids:
                (message,) = db.execute(
                    "SELECT length(message) FROM mails WHERE id = ?", (mail_id,)
                ).fetchone()
                if message:
                    db.execute(
                        "UPDATE mails SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                        " last_error = NULL WHERE id = ?",
                        (now, mail_id),
                    )
                else:
                    db.execute(
                        "UPDATE alerts SET state = 'buffered', mail_id = NULL WHERE mail_id = ?",
                        (mail_id,),
                    )
                    db.execute("DELETE FROM mails WHERE id = ?", (mail_id,))
        return len(ids)

    def heartbeat(self) -> Heartbeat | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT received_at, evaluated_at, blind FROM heartbeat WHERE id = 1"
            ).fetchone()
        return None if row is None else Heartbeat(row[0], row[1], bool(row[2]))

    def record_heartbeat(self, received_at: float, evaluated_at: float | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO heartbeat (id, received_at, evaluated_at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET received_at = excluded.received_at,"
                " evaluated_at = excluded.evaluated_at",
                (received_at, evaluated_at),
            )

    def set_blind(self, blind: bool, mail: NewMail, now: float) -> None:
        """Flip the blind flag and queue the mail saying so, in one transaction."""
        with self._transaction() as db:
            db.execute("UPDATE heartbeat SET blind = ? WHERE id = 1", (blind,))
            db.execute(
                "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
                " created_at, next_attempt_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (mail.message_id, mail.kind, mail.subject, mail.message,
                 mail.first_received_at, now, now, mail.priority),
            )  # fmt: skip

    def depth(self) -> dict[str, int]:
        """Queue depth: alerts in the buffer, held by the cooldown, mails waiting, dead."""
        with self._transaction() as db:
            counts = dict(
                db.execute(
                    "SELECT state, count(*) FROM alerts WHERE state IN ('buffered', 'held')"
                    " GROUP BY state"
                ).fetchall()
            )
            mails = dict(
                db.execute(
                    "SELECT state, count(*) FROM mails WHERE state IN ('pending', 'dead')"
                    " GROUP BY state"
                ).fetchall()
            )
        return {
            "buffered_alerts": counts.get("buffered", 0),
            "held_alerts": counts.get("held", 0),
            "pending_mails": mails.get("pending", 0),
            "dead_letters": mails.get("dead", 0),
        }

    def purge(self, before: float) -> None:
        """Forget alerts and delivered mails older than `before` (the dedup memory ends there).

        Dead letters stay until they are re-queued: nobody should lose one by waiting.
        """
        with self._transaction() as db:
            for statement in (
                "DELETE FROM alerts WHERE state IN ('mailed', 'suppressed') AND received_at < ?"
                " AND (mail_id IS NULL OR mail_id NOT IN (SELECT id FROM mails"
                " WHERE state = 'dead'))",
                "DELETE FROM mails WHERE state = 'sent' AND created_at < ?",
                "DELETE FROM cooldowns WHERE mailed_at < ?",
            ):
                db.execute(statement, (before,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns an older store lacks."""
    for table, column, declaration in MIGRATIONS:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    db.execute(HELD_INDEX)
