"""`create_app(config)` without gunicorn: the factory alone, with nothing global to replace."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from dockpulse_webapp import create_app
from dockpulse_webapp.config import WebappConfig
from testkit.helpers import free_port


def test_an_app_whose_database_is_unreachable_starts_and_reports_503() -> None:
    # Nothing listens on this port: the schema waits for first use, /health names the problem.
    config = WebappConfig(database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    client = create_app(config).test_client()
    assert client.get("/").status_code == 200
    response = client.get("/health")
    assert response.status_code == 503
    assert "refused" in response.get_json()["reason"]


def test_two_apps_in_one_process_keep_their_own_settings_and_metrics() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    small = create_app(WebappConfig(database_url=url, max_cpu_seconds=1)).test_client()
    large = create_app(WebappConfig(database_url=url, max_cpu_seconds=5)).test_client()
    assert small.get("/stress/cpu?seconds=2").status_code == 400
    assert large.get("/stress/cpu?seconds=0.01").status_code == 200
    assert cpu_statuses(small.get("/metrics").text) == {"400"}
    assert cpu_statuses(large.get("/metrics").text) == {"200"}


def cpu_statuses(exposition: str) -> set[str]:
    """Statuses counted for /stress/cpu in one app's /metrics."""
    return {
        sample.labels["status"]
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "dockpulse_webapp_requests_total"
        and sample.labels["endpoint"] == "/stress/cpu"
    }
