"""The stack under Docker Compose on the test engine: host network, locally built images.

Runs the users' docker-compose.yaml with docker-compose.hostnet.yaml, as `make demo` does, under
a project name of its own, with the outbox in a temporary folder; `down -v` at the end.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dockpulse_stack.compose import Stack
from dockpulse_stack.demo import prepare_outbox, write_env_file
from dockpulse_stack.engine import Engine
from dockpulse_stack.images import (
    EXPORTER,
    LOADTEST,
    POSTGRES,
    PROMETHEUS,
    RELAY,
    REPO_ROOT,
    SOCKET_PROXY,
    WEBAPP,
    build_stack_images,
)
from dockpulse_stack.web_access import USER
from testkit.local_stack import copy_rules

# The host-network stack listens on fixed ports (its config files name them).
STACK_PORTS = {
    5432: "postgres",
    8000: "webapp",
    9487: "exporter",
    9090: "prometheus",
    9093: "alertmanager",
    9095: "alert-relay",
}
IMAGES = (PROMETHEUS, POSTGRES, SOCKET_PROXY, EXPORTER, WEBAPP, RELAY, LOADTEST)
# Test timings (shipped: 2 min, 5 s and 10 s), so a stress run's alert is mailed in seconds:
# ContainerHighMemory's `for`, Alertmanager's group wait, the relay's buffer. The relay's graphs
# show the last 30 s (1 h shipped: a new stack's seconds would be a sliver of it) and get
# 15 s (a loaded machine must not cost the test its graph).
TEST_ALERT_FOR = {"ContainerHighMemory": "2s"}
TEST_GROUP_WAIT = "1s"
TEST_RELAY_SETTINGS = {
    "BUFFER_TIMEOUT": "1",
    "CHECK_INTERVAL": "0.2",
    "CHART_WINDOW": "30s",
    "CHART_BUDGET": "15s",
}


def fast_override(folder: Path) -> Path:
    """A Compose override for quick tests: health checked every second (5 s as shipped), the
    exporter refreshing every second (5 s), Prometheus on a copy of prometheus/ whose scrape and
    evaluation intervals are 1 s (5-15 s as shipped) and whose rules have TEST_ALERT_FOR, and
    Alertmanager on a copy of its config whose group waits are at most TEST_GROUP_WAIT."""
    prometheus = folder / "prometheus"
    shutil.copytree(REPO_ROOT / "prometheus", prometheus)
    config = yaml.safe_load((prometheus / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        job.update(scrape_interval="1s", scrape_timeout="1s")
    (prometheus / "prometheus.yml").write_text(yaml.safe_dump(config))
    copy_rules(prometheus / "rules", TEST_ALERT_FOR)
    alertmanager = folder / "alertmanager.yml"
    routes = yaml.safe_load((REPO_ROOT / "alertmanager" / "alertmanager.yml").read_text())
    for route in [routes["route"], *routes["route"].get("routes", [])]:
        if "group_wait" in route:
            route["group_wait"] = TEST_GROUP_WAIT
    alertmanager.write_text(yaml.safe_dump(routes))
    services: dict[str, dict[str, object]] = {
        service: {"healthcheck": {"interval": "1s"}} for service in STACK_PORTS.values()
    }
    services["prometheus"]["volumes"] = [f"{prometheus}:/etc/prometheus:ro"]
    services["alertmanager"]["volumes"] = [f"{alertmanager}:/etc/alertmanager/alertmanager.yml:ro"]
    services["exporter"]["environment"] = {"EXPORTER_REFRESH_INTERVAL": "1s"}
    override = folder / "fast.yaml"
    override.write_text(yaml.safe_dump({"services": services}))
    return override


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def stack_images(engine: Engine) -> None:
    """Every image of the stack but the load generator's (Debian bases are cached by tag)."""
    missing = [image.dockerfile for image in IMAGES if not (REPO_ROOT / image.dockerfile).exists()]
    if missing:
        pytest.fail(f"missing Dockerfiles: {', '.join(missing)}")
    build_stack_images(engine, IMAGES)


@pytest.fixture(scope="module")
def stack(
    engine: Engine, stack_images: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    busy = [f"{port} ({name})" for port, name in STACK_PORTS.items() if port_in_use(port)]
    if busy:
        pytest.fail(f"ports in use on 127.0.0.1: {', '.join(busy)}; is `make demo` running?")
    folder = tmp_path_factory.mktemp("stack")
    outbox = folder / "outbox"
    prepare_outbox(engine, outbox)
    env_file = folder / "compose.env"
    write_env_file(env_file, engine, outbox, TEST_RELAY_SETTINGS)
    fast = fast_override(folder)
    project = f"stack-test-{uuid.uuid4().hex[:8]}"
    stack = Stack(engine.host, env_file, project=project, extra_files=(fast,))
    try:
        stack.run("up", "--detach", "--wait", "--wait-timeout", "120", capture=True)
        yield stack
    finally:
        stack.run(
            "down", "--volumes", "--remove-orphans", "--timeout", "5", check=False, capture=True
        )


def web_auth(stack: Stack, server: str) -> tuple[str, str]:
    """The basic-auth credentials of `server` (prometheus, alertmanager, exporter) in `stack`:
    the password file write_env_file made beside its env file."""
    password_file = stack.env_file.parent / "web" / f"{server}_password"
    return USER, password_file.read_text().strip()


def outbox_of(stack: Stack) -> Path:
    for line in stack.env_file.read_text().splitlines():
        if line.startswith("OUTBOX_PATH="):
            return Path(line.partition("=")[2])
    raise AssertionError("no OUTBOX_PATH in the stack's env file")
