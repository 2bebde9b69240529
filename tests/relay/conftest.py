"""The relay as a real subprocess on a free port, with its folder, outbox and store.

Tests that start relays with `start_relay` run once per store: SQLite (a file in the relay's
folder) and PostgreSQL (a fresh database per relay folder, on one server per session), unless
marked `sqlite_only` (what does not depend on the store, or pokes at the SQLite file itself) or
`postgresql_only` (replicas sharing one database).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller

from testkit.certificates import self_signed
from tests.helpers import Samples, free_port, scrape, wait_until
from tests.relay.smtp_support import Mailbox, smtp_server
from tests.support.postgres import PostgresServer

RELAY = Path(sys.executable).with_name("dockpulse-relay")
TOKEN = "test-token"
STORES = ["sqlite", "postgresql"]


class RelayProcess:
    """One `dockpulse-relay` process; `restart()` keeps the folder (store, outbox, log)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.port = free_port()
        self.env = {
            **os.environ,
            "RELAY_AUTH_TOKEN": TOKEN,
            "RELAY_STORE": str(folder / "relay.db"),
            "OUTBOX_DIR": str(folder / "outbox"),
            "ALERT_LOG": str(folder / "logs" / "container_alerts.log"),
            "BUFFER_TIMEOUT": "1",
            "CHECK_INTERVAL": "0.2",
            "ALERT_COOLDOWN": "0.1",
            "ALERTMANAGER_URL": "",  # silences not watched unless a test says where
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RelayProcess:
        log = (self.folder / "relay.out").open("ab")
        self.process = subprocess.Popen(
            [str(RELAY), f"--web.listen-address=127.0.0.1:{self.port}"],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, timeout=20, interval=0.05)
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"relay exited: {self.output()}")
        return requests.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)

    def output(self) -> str:
        return (self.folder / "relay.out").read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no chance to flush or clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, **env: str) -> RelayProcess:
        self.kill()
        self.env.update(env)
        return self.start()

    def post(
        self, payload: object, token: str | None = TOKEN, path: str = "/webhook"
    ) -> requests.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(f"{self.url}{path}", data=body, headers=headers, timeout=10)

    def metrics(self) -> Samples:
        return scrape(f"{self.url}/metrics")

    def mails(self) -> list[EmailMessage]:
        """The outbox, in the order the mails were written."""
        files = sorted(
            (self.folder / "outbox").glob("*.eml"), key=lambda path: path.stat().st_mtime_ns
        )
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in files
        ]

    def alert_log(self) -> list[dict[str, object]]:
        path = self.folder / "logs" / "container_alerts.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


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
