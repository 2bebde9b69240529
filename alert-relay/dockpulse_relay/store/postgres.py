"""The store in a PostgreSQL database, shared by any number of relay replicas.

Each transaction takes a connection from a small pool (one per concurrent webhook or dispatcher
thread, up to `MAX_CONNECTIONS`) and commits before the caller answers; with PostgreSQL's default
`synchronous_commit = on` a 2xx means the alert is on the server's disk. A connection that fails
is dropped and the error is a StoreError (webhooks answer 503, Alertmanager retries). Claimed
mails are locked with `FOR UPDATE SKIP LOCKED`, so replicas never wait on each other's claims.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any

import psycopg2
import psycopg2.extensions

from dockpulse_relay.store.base import DEFAULT_LEASE_SECONDS, StoreError
from dockpulse_relay.store.schema import POSTGRESQL, create_schema
from dockpulse_relay.store.sql import SqlStore

SCHEMA_LOCK = 0x646F636B  # advisory lock: replicas starting together create the schema once
MAX_CONNECTIONS = 8
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 10_000


class _Cursor:
    """A psycopg2 cursor taking the `?` placeholders the shared SQL uses."""

    def __init__(self, cursor: psycopg2.extensions.cursor) -> None:
        self.cursor = cursor

    def execute(self, sql: str, parameters: Any = ()) -> psycopg2.extensions.cursor:
        self.cursor.execute(sql.replace("?", "%s"), parameters)
        return self.cursor


class PostgresStore(SqlStore):
    NOW_SQL = "extract(epoch from clock_timestamp())::double precision"
    LOCK_ROWS = "FOR UPDATE SKIP LOCKED"
    shared = True

    def __init__(self, url: str, lease: float = DEFAULT_LEASE_SECONDS) -> None:
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__(lease, holder)
        self.url = url
        self._idle: list[psycopg2.extensions.connection] = []
        self._idle_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._schema_ready = False

    def _connect(self) -> psycopg2.extensions.connection:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        connection = psycopg2.connect(
            self.url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="dockpulse-relay",
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            # A stalled server costs a webhook or a lane seconds, not forever.
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )
        if not self._schema_ready:
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                create_schema(cursor.execute, partial(_columns, cursor), POSTGRESQL)
            self._schema_ready = True
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[_Cursor]:
        """One transaction on a pooled connection: committed, or rolled back on any error."""
        with self._slots:
            try:
                connection = self._connect()
            except psycopg2.Error as exc:
                raise StoreError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
            try:
                with connection.cursor() as cursor:
                    yield _Cursor(cursor)
                connection.commit()
            except psycopg2.Error as exc:
                _discard(connection)
                raise StoreError(f"PostgreSQL: {_first_line(exc)}") from exc
            except BaseException:
                try:
                    connection.rollback()
                except psycopg2.Error:
                    _discard(connection)
                    raise
                self._give_back(connection)
                raise
            self._give_back(connection)

    def _give_back(self, connection: psycopg2.extensions.connection) -> None:
        with self._idle_lock:
            self._idle.append(connection)

    def close(self) -> None:
        super().close()
        with self._idle_lock:
            for connection in self._idle:
                connection.close()
            self._idle.clear()


def _discard(connection: psycopg2.extensions.connection) -> None:
    with suppress(psycopg2.Error):
        connection.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _columns(cursor: psycopg2.extensions.cursor, table: str) -> set[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    return {row[0] for row in cursor.fetchall()}
