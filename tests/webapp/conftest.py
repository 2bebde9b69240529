"""Fixtures for the webapp tests: a real PostgreSQL 15 and the real app under gunicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.postgres import PostgresServer
from tests.webapp.process import webapp_process

# Small caps so the hostile-parameter and concurrency tests are quick.
TEST_CAPS = {
    "max_cpu_seconds": "3",
    "max_memory_mb": "64",
    "max_memory_seconds": "3",
    "max_db_queries": "1000",
    "max_slow_ms": "2000",
    "max_concurrent_stress": "2",
}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 server; tests may stop and start it (and must restart it)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture()
def running_postgres(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, started again after the test whatever the test did."""
    postgres.start()
    yield postgres
    postgres.start()


@pytest.fixture(scope="session")
def webapp(postgres: PostgresServer) -> Iterator[str]:
    """Base URL of a `dockpulse-webapp` process (2 workers) on the session's database."""
    with webapp_process(postgres.url(), workers="2", threads="4", **TEST_CAPS) as url:
        yield url
