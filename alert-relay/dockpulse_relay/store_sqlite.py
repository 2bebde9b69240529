"""The store in one SQLite file, for one relay process.

Why SQLite in WAL mode with `synchronous=NORMAL` and one writer connection: a webhook is answered
2xx only after its transaction has committed. In WAL mode a commit is an append to the `-wal`
file; with NORMAL it is not fsync'ed per commit, so it costs tens of microseconds instead of a
disk flush, yet it is in the kernel's page cache the moment `COMMIT` returns and survives the
relay being killed (kill -9, OOM, crash). Only a power loss or kernel panic can lose the last
commits; `store_sync: full` closes that gap at the price of one fsync per notification. One
connection behind a lock keeps writers from ever waiting on SQLite's own busy locking.

One process owns the file, so it claims mails and leases under one fixed name: a relay restarted
after kill -9 takes its predecessor's claims back at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dockpulse_relay.store import DEFAULT_LEASE_SECONDS, SqlStore, StoreError

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
    priority         INTEGER NOT NULL DEFAULT 2, -- 0 critical first ... 3 resolved warnings
    claimed_by       TEXT,                     -- the process delivering it
    claimed_until    REAL                      -- ... until then, unless it renews
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
CREATE TABLE IF NOT EXISTS notices (
    key     TEXT PRIMARY KEY,  -- silence:<id> | blind
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,               -- planner
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""
# Columns added since the first release: (table, column, declaration) for older stores.
MIGRATIONS = [
    ("alerts", "due_at", "REAL"),
    ("mails", "priority", "INTEGER NOT NULL DEFAULT 2"),
    ("mails", "claimed_by", "TEXT"),
    ("mails", "claimed_until", "REAL"),
]
HELD_INDEX = (
    "CREATE INDEX IF NOT EXISTS alerts_held ON alerts(fingerprint, due_at) WHERE state = 'held'"
)

WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024  # the log is cut back to this after a checkpoint


class SqliteStore(SqlStore):
    """All reads and writes go through one connection, one transaction at a time."""

    NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(
        self, path: Path, synchronous: str = "normal", lease: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        super().__init__(lease, holder="sqlite")
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
                _migrate(db)
                db.executescript(SCHEMA)
                db.execute(HELD_INDEX)
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
                self._rollback(db)
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

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _reset(self, db: sqlite3.Connection) -> None:
        """Roll back, and reopen next time: the file may have been fixed or replaced."""
        self._rollback(db)
        db.close()
        self._db = None

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns an older store lacks (before the schema's indexes name them)."""
    for table, column, declaration in MIGRATIONS:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if columns and column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
