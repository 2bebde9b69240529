"""The webapp in a real container from the locally built image, watched by the real exporter:
/health answers, and the stress endpoints move the container's CPU and memory metrics."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from dockpulse_stack.engine import Engine
from testkit.helpers import scrape, value, wait_until
from testkit.local_stack import LocalStack
from testkit.postgres import PostgresServer
from testkit.webapp_container import WebappContainer, webapp_image

pytestmark = pytest.mark.docker
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def container(engine: Engine, postgres: PostgresServer) -> Iterator[WebappContainer]:
    """The app's container (image rebuilt from the layer cache, so a code change is in it),
    health-checked every second."""
    name = f"webapp-test-{uuid.uuid4().hex[:8]}"
    webapp = WebappContainer(engine, name, postgres.url(), compose_service=None, health_interval=1)
    try:
        yield webapp.run(webapp_image(engine), timeout=30)
    finally:
        webapp.remove()


@pytest.fixture(scope="module")
def exporter(
    engine: Engine, container: WebappContainer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The real dockpulse-exporter, refreshing twice a second; yields its /metrics URL."""
    with LocalStack(tmp_path_factory.mktemp("webapp-exporter")) as stack:
        service = stack.exporter({"refresh_interval": "500ms"}, docker_host=engine.host)
        url = f"{service.url}/metrics"
        wait_until(lambda: cpu_seconds(url, container.name) is not None, timeout=45)
        yield url


def cpu_seconds(metrics_url: str, name: str) -> float | None:
    return value(scrape(metrics_url), "container_cpu_usage_seconds_total", name=name, cpu="total")


def memory_bytes(metrics_url: str, name: str) -> float:
    found = value(scrape(metrics_url), "container_memory_usage_bytes", name=name)
    assert found is not None
    return found


def cpu_rate(metrics_url: str, name: str, seconds: float) -> float:
    """Cores used over `seconds`, from two scrapes of the counter."""
    start_value, start = cpu_seconds(metrics_url, name), time.monotonic()
    time.sleep(seconds)
    end_value, end = cpu_seconds(metrics_url, name), time.monotonic()
    assert start_value is not None and end_value is not None
    return (end_value - start_value) / (end - start)


def in_background(url: str) -> threading.Thread:
    thread = threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 30})
    thread.start()
    return thread


def test_health_answers_and_docker_reports_healthy_non_root(
    engine: Engine, container: WebappContainer
) -> None:
    response = requests.get(f"{container.url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["database"] == "ok"

    def docker(*args: str) -> str:
        result = subprocess.run(["docker", *args], env=engine.env(), capture_output=True, text=True)
        return result.stdout.strip()

    health = ("inspect", "--format", "{{.State.Health.Status}}", container.name)
    wait_until(lambda: docker(*health) == "healthy")
    assert docker("exec", container.name, "id", "-u") == "10001"


def test_cpu_stress_raises_the_container_cpu_rate(
    container: WebappContainer, exporter: str
) -> None:
    idle = cpu_rate(exporter, container.name, 1.5)
    burns = [in_background(f"{container.url}/stress/cpu?seconds=4") for _ in range(2)]
    time.sleep(0.7)
    busy = cpu_rate(exporter, container.name, 2.5)
    for burn in burns:
        burn.join()
    # Two burning requests keep up to two cores busy; other work on the host may take a share.
    assert busy > 0.3, f"under stress the container used only {busy:.2f} cores"
    assert busy > idle + 0.25, f"idle {idle:.2f} cores, under stress {busy:.2f}"


def test_memory_stress_raises_the_container_memory_then_frees_it(
    container: WebappContainer, exporter: str
) -> None:
    name = container.name
    before = memory_bytes(exporter, name)
    hold = in_background(f"{container.url}/stress/memory?mb=200&seconds=4")
    peak = wait_until(
        lambda: (usage := memory_bytes(exporter, name)) > before + 150 * MIB and usage, timeout=10
    )
    hold.join()
    wait_until(lambda: memory_bytes(exporter, name) < peak - 150 * MIB, timeout=10)
