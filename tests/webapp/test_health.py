"""/health against a real PostgreSQL: 200 while it answers, 503 with the reason while it is down."""

from __future__ import annotations

import requests

from testkit.helpers import wait_until
from testkit.postgres import PostgresServer


def health(webapp: str) -> requests.Response:
    return requests.get(f"{webapp}/health", timeout=10)


def test_health_is_200_with_json_when_the_database_answers(webapp: str) -> None:
    response = health(webapp)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_is_503_while_the_database_is_down_and_200_when_it_is_back(
    webapp: str, running_postgres: PostgresServer
) -> None:
    assert health(webapp).status_code == 200  # the pool now holds live connections
    running_postgres.stop()
    wait_until(lambda: health(webapp).status_code == 503, timeout=15)
    body = health(webapp).json()
    assert body["status"] == "unavailable"
    assert body["database"] == "unreachable"
    assert body["reason"]  # the driver's one-line reason, e.g. "connection refused"
    assert requests.get(f"{webapp}/stress/db?queries=2", timeout=10).status_code == 503
    assert requests.get(f"{webapp}/", timeout=5).status_code == 200  # the app itself is up

    running_postgres.start()
    wait_until(lambda: health(webapp).status_code == 200, timeout=15)
    # Stale pooled connections are replaced: work succeeds at once on every worker.
    for _ in range(6):
        assert requests.get(f"{webapp}/stress/db?queries=4", timeout=10).status_code == 200
