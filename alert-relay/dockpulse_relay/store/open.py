"""Opening the store RELAY_STORE names; the only module that knows both kinds."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dockpulse_relay.config import POSTGRES_SCHEMES
from dockpulse_relay.store.base import DEFAULT_LEASE_SECONDS
from dockpulse_relay.store.sql import SqlStore


def describe_store(store: Path | str) -> str:
    """RELAY_STORE for logs and messages: a URL without its password."""
    if isinstance(store, str) and store.startswith(POSTGRES_SCHEMES):
        parts = urlsplit(store)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return str(store)


def open_store(
    store: Path | str, synchronous: str = "normal", lease: float = DEFAULT_LEASE_SECONDS
) -> SqlStore:
    """The store RELAY_STORE names: a `postgresql://` URL, else a SQLite file's path."""
    if isinstance(store, str) and store.startswith(POSTGRES_SCHEMES):
        from dockpulse_relay.store.postgres import PostgresStore  # psycopg2 only when used

        return PostgresStore(store, lease)
    from dockpulse_relay.store.sqlite import SqliteStore

    return SqliteStore(Path(store), synchronous, lease)
