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
from functools import partial
from pathlib import Path

from dockpulse_relay.store.base import DEFAULT_LEASE_SECONDS, StoreError
from dockpulse_relay.store.schema import SQLITE, create_schema
from dockpulse_relay.store.sql import SqlStore

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
                create_schema(db.execute, partial(_columns, db), SQLITE)
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


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
