"""The relay as a real subprocess on a free port, with its folder, outbox and store.

Tests that start relays with `start_relay` run once per store: SQLite (a file in the relay's
folder) and PostgreSQL (a fresh database per relay folder, on one server per session), unless
marked `sqlite_only` (what does not depend on the store, or pokes at the SQLite file itself) or
`postgresql_only` (replicas sharing one database).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from testkit.certificates import self_signed
from testkit.postgres import PostgresServer
from testkit.relay_process import RelayProcess
from testkit.smtp import Mailbox, smtp_server

STORES = ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "relay_store" in metafunc.fixturenames:
        marked = {mark.name for mark in metafunc.definition.iter_markers()}
        stores = [
            store
            for store in STORES
            if f"{store}_only" in marked or not marked & {"sqlite_only", "postgresql_only"}
        ]
        metafunc.parametrize("relay_store", stores, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session's relay stores."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def relay_store(request: pytest.FixtureRequest) -> Callable[[Path], str]:
    """RELAY_STORE for a relay folder: its SQLite file, or its own PostgreSQL database."""
    if request.param == "sqlite":
        return lambda folder: str(folder / "relay.db")
    server = request.getfixturevalue("postgres_server")
    databases: dict[Path, str] = {}

    def database(folder: Path) -> str:
        if folder not in databases:
            databases[folder] = server.create_database()
        return databases[folder]

    return database


@pytest.fixture
def start_relay(tmp_path: Path, relay_store: Callable[[Path], str]) -> Iterator:
    """`start_relay(**env)` starts a relay in its own folder; all are stopped afterwards."""
    started: list[RelayProcess] = []

    def start(folder: Path | None = None, **env: str) -> RelayProcess:
        where = folder or tmp_path / f"relay{len(started)}"
        where.mkdir(parents=True, exist_ok=True)
        relay = RelayProcess(where, {"RELAY_STORE": relay_store(where), **env})
        started.append(relay)
        return relay.start()

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), which the relay is told to trust."""
    return self_signed(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp(certificate) -> Iterator:
    """`smtp(replies)` starts a real SMTP server with a Mailbox; all stop afterwards."""
    started: list[Controller] = []

    def start(replies: list[str] | None = None) -> tuple[Mailbox, Controller]:
        mailbox = Mailbox(replies)
        started.append(smtp_server(mailbox, certificate))
        return mailbox, started[-1]

    yield start
    for controller in started:
        controller.stop()
