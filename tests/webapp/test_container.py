"""The webapp in a real container from the locally built image, watched by the real exporter:
/health answers, and the stress endpoints move the container's CPU and memory metrics."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from dockpulse.engine import Engine
from dockpulse.postgres import PostgresServer
from dockpulse.stack_images import WEBAPP, build_local_image
from tests.helpers import free_port, scrape, value, wait_until
from tests.webapp.process import BIN

pytestmark = pytest.mark.docker
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def webapp_image(engine: Engine) -> str:
    """dockpulse/webapp:local on the Debian Python base; rebuilt from the layer cache each
    session, so a code change is always in the image under test."""
    return build_local_image(engine, WEBAPP)


@pytest.fixture(scope="module")
def container(engine: Engine, webapp_image: str, postgres: PostgresServer) -> Iterator[dict]:
    name = f"webapp-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    subprocess.run(
        [
            *("docker", "run", "--detach", "--name", name, "--network", "host"),
            *("--health-interval=1s", "--health-start-period=1s"),
            *("--env", f"DATABASE_URL={postgres.url()}"),
            webapp_image,
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        env=engine.env(),
        check=True,
        capture_output=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/health", timeout=2).ok, timeout=30)
        yield {"name": name, "url": url}
    finally:
        subprocess.run(["docker", "rm", "--force", name], env=engine.env(), capture_output=True)


@pytest.fixture(scope="module")
def exporter(engine: Engine, container: dict) -> Iterator[str]:
    """The real dockpulse-exporter, refreshing twice a second; yields its /metrics URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "dockpulse-exporter"),
            f"--web.listen-address=127.0.0.1:{port}",
            "--refresh.interval=0.5s",
            "--log.level=warning",
        ],
        env={**os.environ, "DOCKER_HOST": engine.host},
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: cpu_seconds(url, container["name"]) is not None, timeout=45)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


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
    engine: Engine, container: dict
) -> None:
    response = requests.get(f"{container['url']}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["database"] == "ok"

    def docker(*args: str) -> str:
        result = subprocess.run(["docker", *args], env=engine.env(), capture_output=True, text=True)
        return result.stdout.strip()

    health = ("inspect", "--format", "{{.State.Health.Status}}", container["name"])
    wait_until(lambda: docker(*health) == "healthy")
    assert docker("exec", container["name"], "id", "-u") == "10001"


def test_cpu_stress_raises_the_container_cpu_rate(container: dict, exporter: str) -> None:
    idle = cpu_rate(exporter, container["name"], 1.5)
    burns = [in_background(f"{container['url']}/stress/cpu?seconds=4") for _ in range(2)]
    time.sleep(0.7)
    busy = cpu_rate(exporter, container["name"], 2.5)
    for burn in burns:
        burn.join()
    # Two burning requests keep up to two cores busy; other work on the host may take a share.
    assert busy > 0.3, f"under stress the container used only {busy:.2f} cores"
    assert busy > idle + 0.25, f"idle {idle:.2f} cores, under stress {busy:.2f}"


def test_memory_stress_raises_the_container_memory_then_frees_it(
    container: dict, exporter: str
) -> None:
    name = container["name"]
    before = memory_bytes(exporter, name)
    hold = in_background(f"{container['url']}/stress/memory?mb=200&seconds=4")
    peak = wait_until(
        lambda: (usage := memory_bytes(exporter, name)) > before + 150 * MIB and usage, timeout=10
    )
    hold.join()
    wait_until(lambda: memory_bytes(exporter, name) < peak - 150 * MIB, timeout=10)
