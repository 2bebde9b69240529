"""PostgreSQL through a psycopg2 connection pool: the schema, the health ping and the DB load.

The pool is made lazily in each worker process (never shared across a fork). A connection the
server dropped (restart, crash) is discarded and the work retried on a fresh one, so the app
recovers by itself when the database comes back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
import psycopg2.pool
from psycopg2.extensions import connection as Connection

log = logging.getLogger("dockpulse_webapp.database")
T = TypeVar("T")

SCHEMA_LOCK_ID = 4_870_001  # pg_advisory_xact_lock key: workers create the schema one at a time
KEEP_ROWS = 100_000
STATEMENT_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS stress_events (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    worker integer NOT NULL,
    payload text NOT NULL
)
"""


TRIM = "DELETE FROM stress_events WHERE id <= (SELECT max(id) FROM stress_events) - %s"


class DatabaseUnavailable(RuntimeError):
    """The database did not answer; the message says why (one line)."""


class _StaleConnection(Exception):
    """A pooled connection the server had closed; retry on a fresh one."""


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class Database:
    """The app's PostgreSQL: `ping()` for /health, `run_queries(n)` for /stress/db."""

    def __init__(self, url: str, pool_size: int, connect_timeout: float) -> None:
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = max(1, round(connect_timeout))
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()
        self._schema_ready = False

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    0,
                    self.pool_size,
                    dsn=self.url,
                    connect_timeout=self.connect_timeout,
                    application_name="dockpulse-webapp",
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                )
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        pool = self._get_pool()
        conn = pool.getconn()
        try:
            if not self._schema_ready:
                self._create_schema(conn)
            yield conn
            conn.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if conn.closed:
                pool.putconn(conn, close=True)
                raise _StaleConnection(_reason(exc)) from exc
            conn.rollback()
            pool.putconn(conn)
            raise
        except BaseException:
            if not conn.closed:
                conn.rollback()
            pool.putconn(conn, close=bool(conn.closed))
            raise
        else:
            pool.putconn(conn)

    def _create_schema(self, conn: Connection) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            cur.execute(SCHEMA)
        conn.commit()
        self._schema_ready = True

    def _run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a pooled connection; DatabaseUnavailable when the database is down."""
        last = "no connection"
        for _ in range(self.pool_size + 1):
            try:
                with self._connection() as conn:
                    return work(conn)
            except _StaleConnection as exc:
                last = str(exc)
            except (psycopg2.Error, psycopg2.pool.PoolError) as exc:
                raise DatabaseUnavailable(_reason(exc)) from exc
        raise DatabaseUnavailable(last)

    def ensure_schema(self) -> None:
        """Create the schema now (idempotent); DatabaseUnavailable when the database is down."""
        self._schema_ready = False
        self._run(lambda conn: None)

    def ping(self) -> None:
        """One round trip; DatabaseUnavailable with the reason when it fails."""

        def select_one(conn: Connection) -> None:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()

        self._run(select_one)

    def run_queries(self, queries: int) -> dict[str, Any]:
        """`queries` real statements, alternating inserts and reads of the newest rows."""

        def work(conn: Connection) -> dict[str, Any]:
            started = time.monotonic()
            inserted = rows_read = 0
            worker = os.getpid()
            with conn.cursor() as cur:
                for number in range(queries):
                    if number % 2 == 0:
                        cur.execute(
                            "INSERT INTO stress_events (worker, payload) VALUES (%s, %s)",
                            (worker, f"stress query {number}"),
                        )
                        inserted += 1
                    else:
                        cur.execute(
                            "SELECT count(*), max(length(payload)) FROM"
                            " (SELECT payload FROM stress_events ORDER BY id DESC LIMIT 50) AS t"
                        )
                        rows_read += cur.fetchone()[0]
                    if number % 100 == 99:
                        conn.commit()
                cur.execute(TRIM, (KEEP_ROWS,))
            return {
                "queries": queries,
                "inserted": inserted,
                "rows_read": rows_read,
                "seconds": round(time.monotonic() - started, 3),
            }

        return self._run(work)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None
