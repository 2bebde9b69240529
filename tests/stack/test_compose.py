"""docker-compose.yaml (the users' file) and the host-network override, on real components.

The static checks run `docker-compose config` on the files as shipped. The proof brings the
stack up with `docker-compose up --wait` on the test engine (locally built images, host
network: nothing can be pulled here and no bridge may be made), checks every service but
Grafana is healthy and watched, and follows one alert from a stopped container to a mail.
"""

from __future__ import annotations

import email
import json
import subprocess
from email import policy
from pathlib import Path

import pytest
import requests

from dockpulse_stack.compose import COMPOSE_FILES, Stack, compose_command
from dockpulse_stack.images import REPO_ROOT
from tests.helpers import scrape, value, values, wait_until
from tests.stack.conftest import outbox_of

SECRETS = {
    "POSTGRES_PASSWORD": "pg-test",
    "RELAY_AUTH_TOKEN": "relay-test",
    "GF_ADMIN_PASSWORD": "grafana-test",
}
RUNNING = {"postgres", "webapp", "exporter", "prometheus", "alertmanager", "alert-relay"}


def compose_config(
    env: dict[str, str], tmp_path: Path, *files: str
) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    command = [
        *compose_command(),
        "--project-directory",
        str(REPO_ROOT),
        "--env-file",
        str(env_file),
        "--profile",
        "*",
    ]
    for file in files:
        command += ["--file", str(REPO_ROOT / file)]
    return subprocess.run(
        [*command, "config", "--format", "json"], capture_output=True, text=True, cwd=tmp_path
    )


def test_users_file_is_valid_and_pins_every_image(tmp_path: Path) -> None:
    result = compose_config(SECRETS, tmp_path, "docker-compose.yaml")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == RUNNING | {"network", "grafana", "stress-generator", "alertmanager-2"}
    for name, service in services.items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag not in ("", "latest"), f"{name}: image {service['image']}"
        if name not in ("network", "stress-generator"):
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
    assert services["exporter"]["user"] != "root"
    socket = [v for v in services["exporter"]["volumes"] if v["target"] == "/var/run/docker.sock"]
    assert socket and socket[0]["read_only"]
    assert services["stress-generator"]["profiles"] == ["stress"]
    assert services["alertmanager-2"]["profiles"] == ["ha"]  # the second peer, on demand
    peers = {name: services[name]["command"] for name in ("alertmanager", "alertmanager-2")}
    assert "--cluster.peer=127.0.0.1:9194" in peers["alertmanager"]
    assert "--cluster.peer=127.0.0.1:9094" in peers["alertmanager-2"]
    named = {
        v["source"]
        for s in services.values()
        for v in s.get("volumes", [])
        if v["type"] == "volume"
    }
    assert {"prometheus-data", "grafana-data", "relay-store", "alert-log"} <= named


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_users_file_refuses_to_start_without_a_secret(tmp_path: Path, secret: str) -> None:
    result = compose_config({**SECRETS, secret: ""}, tmp_path, "docker-compose.yaml")
    assert result.returncode != 0
    assert f"set {secret} in .env" in result.stderr


def test_override_runs_everything_on_the_host_network_from_local_images(tmp_path: Path) -> None:
    result = compose_config(SECRETS, tmp_path, *COMPOSE_FILES)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        if name not in ("grafana", "network"):
            assert service["image"].endswith(":local"), name
            assert "build" not in service, name
    assert services["grafana"]["profiles"] == ["grafana"]  # where its image can be had
    assert services["network"]["profiles"] == ["users-network"]  # never started here


def service_states(stack: Stack) -> dict[str, tuple[str, str]]:
    output = stack.run("ps", "--all", "--format", "json", capture=True)
    rows = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {row["Service"]: (row["State"], row["Health"]) for row in rows}


@pytest.mark.docker
def test_every_service_but_grafana_is_up_healthy_and_watched(stack: Stack) -> None:
    assert service_states(stack) == {name: ("running", "healthy") for name in RUNNING}

    def exporter_sees_all() -> bool:
        samples = scrape("http://127.0.0.1:9487/metrics")
        up = {
            labels["container_label_com_docker_compose_service"]: v
            for name, labels, v in samples
            if name == "container_up"
            and labels["container_label_com_docker_compose_project"] == stack.project
        }
        return (
            up == dict.fromkeys(RUNNING, 1.0)
            and value(samples, "probe_success", probe="webapp") == 1.0
        )

    wait_until(exporter_sees_all, timeout=30)
    samples = scrape("http://127.0.0.1:9487/metrics")
    assert values(samples, "container_memory_usage_bytes", name=f"{stack.project}-webapp-1")[0] > 0

    def targets_up() -> set[str]:
        targets = requests.get("http://127.0.0.1:9090/api/v1/targets", timeout=5).json()
        up = {t["labels"]["job"] for t in targets["data"]["activeTargets"] if t["health"] == "up"}
        return up if {"exporter", "webapp", "relay", "prometheus", "alertmanager"} <= up else set()

    wait_until(targets_up, timeout=40, interval=1)


@pytest.mark.docker
def test_a_stopped_container_is_mailed_as_critical(stack: Stack) -> None:
    outbox = outbox_of(stack)
    container = f"{stack.project}-webapp-1"
    stack.run("kill", "webapp", capture=True)

    def mail_about_webapp() -> email.message.EmailMessage | None:
        for path in sorted(outbox.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            text = message.as_string()
            if "ContainerDown" in text and container in text:
                return message
        return None

    message = wait_until(mail_about_webapp, timeout=60, interval=1)
    assert "critical" in message.as_string().lower()
