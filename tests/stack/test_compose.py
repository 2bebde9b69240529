"""docker-compose.yaml (the users' file) and the host-network override, on real components.

The static checks run `docker-compose config` on the files as shipped. The proof brings the
stack up with `docker-compose up --wait` on the test engine (locally built images, host
network: nothing can be pulled here and no bridge may be made), checks every service but
Grafana is healthy and watched, and follows one alert from a stopped container to a mail.
"""

from __future__ import annotations

import email
import json
import re
import subprocess
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from dockpulse_stack.compose import COMPOSE_FILES, Stack, compose_command
from dockpulse_stack.images import REPO_ROOT
from tests.helpers import scrape, value, values, wait_until
from tests.stack.conftest import outbox_of
from tests.support.local_stack import alertmanager_config

SECRETS = {
    "POSTGRES_PASSWORD": "pg-test",
    "RELAY_AUTH_TOKEN": "relay-test",
    "GF_ADMIN_PASSWORD": "grafana-test",
}
RUNNING = {"postgres", "webapp", "exporter", "prometheus", "alertmanager", "alert-relay"}
HA = {"alertmanager-2", "alert-relay-2", "relay-db"}  # profile ha


def compose_config(
    env: dict[str, str], tmp_path: Path, *files: str, profile: str = "*"
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` (the real binary) of `files` with `env` as the .env file and
    `profile` on (every profile by default)."""
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    command = [
        *compose_command(),
        "--project-directory",
        str(REPO_ROOT),
        "--env-file",
        str(env_file),
        "--profile",
        profile,
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
    assert set(services) == RUNNING | {"network", "grafana", "stress-generator"} | HA
    for name, service in services.items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag not in ("", "latest"), f"{name}: image {service['image']}"
        if name not in ("network", "stress-generator"):
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
    assert services["exporter"]["user"] != "root"
    socket = [v for v in services["exporter"]["volumes"] if v["target"] == "/var/run/docker.sock"]
    assert socket and socket[0]["read_only"]
    assert services["stress-generator"]["profiles"] == ["stress"]
    for name in HA:  # the second peer, the second relay and their store: on demand
        assert services[name]["profiles"] == ["ha"], name
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


def ha_settings() -> dict[str, str]:
    """The ha profile's settings as .env-sample gives them (commented out), a password set."""
    found = dict(re.findall(r"^#(RELAY_\w+)=(.*)$", (REPO_ROOT / ".env-sample").read_text(), re.M))
    assert set(found) == {"RELAY_DB_PASSWORD", "RELAY_STORE"}, found
    return {**found, "RELAY_DB_PASSWORD": "relay-db-test"}


def relay_urls(services: dict[str, Any], *names: str) -> list[str]:
    """Where the relays `names` listen, as Alertmanager reaches them (127.0.0.1:PORT)."""
    ports = [services[n]["environment"]["RELAY_LISTEN_ADDRESS"].rpartition(":")[2] for n in names]
    return [f"http://127.0.0.1:{port}" for port in ports]


def mounted_alertmanager_config(service: dict[str, Any]) -> Path:
    (source,) = [
        v["source"]
        for v in service["volumes"]
        if v["target"] == "/etc/alertmanager/alertmanager.yml"
    ]
    return Path(source)


@pytest.mark.parametrize(
    "files", [("docker-compose.yaml",), COMPOSE_FILES], ids=["users-file", "host-network"]
)
def test_ha_profile_runs_two_relays_on_one_postgresql_behind_both_peers(
    tmp_path: Path, files: tuple[str, ...]
) -> None:
    result = compose_config({**SECRETS, **ha_settings()}, tmp_path, *files, profile="ha")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) >= RUNNING | HA
    relays = [services["alert-relay"], services["alert-relay-2"]]
    database = services["relay-db"]["environment"]

    # Both replicas on relay-db's database, its password beside the URL, not in it.
    (store,) = {relay["environment"]["RELAY_STORE"] for relay in relays}
    url = urlsplit(store)
    assert (url.scheme, url.hostname, url.password) == ("postgresql", "127.0.0.1", None)
    assert (url.port, url.username) == (int(database["PGPORT"]), database["POSTGRES_USER"])
    assert url.path == f"/{database['POSTGRES_DB']}"
    for relay in relays:
        assert relay["environment"]["PGPASSWORD"] == database["POSTGRES_PASSWORD"] != ""
    assert services["alert-relay-2"]["depends_on"]["relay-db"]["condition"] == "service_healthy"
    logs = {relay["environment"]["ALERT_LOG"] for relay in relays}
    assert len(logs) == 2  # one alert log each

    # Both peers post every notification to both replicas: alertmanager.yml, one webhook per
    # replica (the file users read is kept in step with the shipped one).
    urls = relay_urls(services, "alert-relay", "alert-relay-2")
    token = "/etc/alertmanager/relay_token"
    for peer in ("alertmanager", "alertmanager-2"):
        config_file = mounted_alertmanager_config(services[peer])
        assert config_file.name == "alertmanager-ha.yml", peer
        assert yaml.safe_load(config_file.read_text()) == alertmanager_config(urls, Path(token))


def test_without_ha_settings_one_relay_keeps_sqlite_and_the_second_never_does(
    tmp_path: Path,
) -> None:
    result = compose_config(SECRETS, tmp_path, "docker-compose.yaml", profile="ha")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["alert-relay"]["environment"]["RELAY_STORE"].endswith("/relay.db")
    for peer in ("alertmanager", "alertmanager-2"):
        assert mounted_alertmanager_config(services[peer]).name == "alertmanager.yml"
    # Started with the profile but without RELAY_STORE, the second replica cannot log in
    # (its log names the setting) rather than mail every alert a second time from SQLite.
    second = urlsplit(services["alert-relay-2"]["environment"]["RELAY_STORE"])
    assert second.scheme == "postgresql" and "RELAY_STORE" in str(second.username)


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
