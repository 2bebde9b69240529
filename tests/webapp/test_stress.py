"""The load endpoints do real work, answer in JSON, and respect the caps."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from testkit.helpers import scrape, value
from testkit.postgres import PostgresServer


def get(webapp: str, path: str, timeout: float = 15) -> requests.Response:
    return requests.get(f"{webapp}{path}", timeout=timeout)


def stress_rows(postgres: PostgresServer) -> int:
    with psycopg2.connect(postgres.url()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM stress_events")
        return cur.fetchone()[0]


def test_index_names_the_endpoints(webapp: str) -> None:
    page = get(webapp, "/").text
    for path in ("/health", "/metrics", "/stress/cpu", "/stress/memory", "/stress/db"):
        assert path in page


def test_db_load_runs_real_queries_and_inserts(
    webapp: str, running_postgres: PostgresServer
) -> None:
    before = stress_rows(running_postgres)
    response = get(webapp, "/stress/db?queries=200")
    assert response.status_code == 200
    assert response.json()["queries"] == 200
    assert response.json()["inserted"] == 100
    assert stress_rows(running_postgres) == before + 100


def test_cpu_burns_for_the_time_asked(webapp: str) -> None:
    body = get(webapp, "/stress/cpu?seconds=0.5&intensity=100").json()
    assert body["stress"] == "cpu"
    assert body["hashes"] > 0
    assert body["elapsed_seconds"] >= 0.5


def test_memory_is_held_for_the_time_asked(webapp: str) -> None:
    body = get(webapp, "/stress/memory?mb=16&seconds=0.3").json()
    assert body["bytes"] == 16 * 1024 * 1024
    assert body["elapsed_seconds"] >= 0.3


def test_slow_answers_late_and_error_answers_500(webapp: str) -> None:
    assert get(webapp, "/stress/slow?ms=300").json()["elapsed_seconds"] >= 0.3
    response = get(webapp, "/stress/error")
    assert response.status_code == 500
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/stress/cpu", "seconds"),  # missing
        ("/stress/cpu?seconds=", "seconds"),  # empty
        ("/stress/cpu?seconds=-1", "seconds"),
        ("/stress/cpu?seconds=abc", "seconds"),
        ("/stress/cpu?seconds=nan", "seconds"),
        ("/stress/cpu?seconds=inf", "seconds"),
        ("/stress/cpu?seconds=99999999999999999999", "seconds"),
        ("/stress/cpu?seconds=1&intensity=0", "intensity"),
        ("/stress/cpu?seconds=1&intensity=101", "intensity"),
        ("/stress/memory?mb=1000000", "mb"),
        ("/stress/memory?mb=1.5", "mb"),
        ("/stress/memory?mb=-5", "mb"),
        ("/stress/memory?mb=8&seconds=86400", "seconds"),
        ("/stress/db", "queries"),
        ("/stress/db?queries=10000000", "queries"),
        ("/stress/db?queries=0", "queries"),
        ("/stress/slow?ms=1e9", "ms"),
        ("/stress/slow?ms=%00", "ms"),
    ],
)
def test_hostile_parameters_get_400_naming_the_parameter(
    webapp: str, path: str, parameter: str
) -> None:
    response = get(webapp, path)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter
    assert response.json()["error"].startswith(f"{parameter}: ")


def test_the_app_stays_healthy_after_hostile_requests(webapp: str) -> None:
    for path in ("/stress/memory?mb=99999999", "/stress/cpu?seconds=1e308", "/stress/db?queries=x"):
        assert get(webapp, path).status_code == 400
    assert get(webapp, "/health").status_code == 200


def test_past_the_concurrency_cap_stress_requests_get_429(webapp: str) -> None:
    """The test app allows 2 stress requests at once, across both gunicorn workers."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        slow = [pool.submit(get, webapp, "/stress/slow?ms=1500") for _ in range(2)]
        # Let both slow requests take their slots (they hold them for 1.5 s).
        time.sleep(0.5)
        extra = get(webapp, "/stress/cpu?seconds=0.1")
        statuses = [future.result().status_code for future in slow]
    assert statuses == [200, 200]
    assert extra.status_code == 429
    assert extra.headers["Retry-After"] == "1"
    assert get(webapp, "/health").status_code == 200  # health is never capped


def test_metrics_count_requests_and_latency_by_endpoint_and_status(webapp: str) -> None:
    get(webapp, "/stress/error")
    get(webapp, "/stress/slow?ms=50")
    samples = scrape(f"{webapp}/metrics")
    errors = value(
        samples, "dockpulse_webapp_requests_total", endpoint="/stress/error", status="500"
    )
    assert errors is not None and errors >= 1
    slow_count = value(
        samples,
        "dockpulse_webapp_request_duration_seconds_count",
        endpoint="/stress/slow",
        status="200",
    )
    assert slow_count is not None and slow_count >= 1
    fast_bucket = value(
        samples,
        "dockpulse_webapp_request_duration_seconds_bucket",
        endpoint="/stress/slow",
        status="200",
        le="0.01",
    )
    assert fast_bucket == 0  # a 50 ms answer is not counted as faster than 10 ms
