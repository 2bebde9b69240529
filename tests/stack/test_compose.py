"""docker-compose.yaml (the users' file) and the host-network override, on real components.

The static checks run `docker-compose config` on the files as shipped. The proof brings the
stack up with `docker-compose up --wait` on the test engine (locally built images, host
network: nothing can be pulled here and no bridge may be made), checks every service but
Grafana is healthy and watched, runs the memory-intensive load as `make stress` does and
follows its alert to a mail (graph, silence link followed), and follows one alert from a
stopped container to a mail.
"""

from __future__ import annotations

import email
import io
import json
import re
import subprocess
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from PIL import Image

from dockpulse_stack.compose import COMPOSE_FILES, Stack, compose_command
from dockpulse_stack.demo import run_stress
from dockpulse_stack.errors import StackError
from dockpulse_stack.images import REPO_ROOT
from testkit.helpers import scrape, value, values, wait_until
from testkit.local_stack import alertmanager_config
from testkit.mail import mails_about, parse
from testkit.mail_view import SERIES_BLUE, THRESHOLD_RED, chart_as_shown, colour_pixels
from testkit.silences import create_silence, matchers_from_silence_url
from tests.stack.conftest import outbox_of, web_auth

SECRETS = {
    "POSTGRES_PASSWORD": "pg-test",
    "RELAY_AUTH_TOKEN": "relay-test",
    "GF_ADMIN_PASSWORD": "grafana-test",
}
RUNNING = {
    "postgres",
    "webapp",
    "docker-socket-proxy",
    "exporter",
    "prometheus",
    "alertmanager",
    "alert-relay",
}
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
    # Only the socket proxy holds Docker's socket; the exporter reads Docker through it.
    holders = {
        name
        for name, service in services.items()
        for v in service.get("volumes", [])
        if v["target"] == "/var/run/docker.sock"
    }
    assert holders == {"docker-socket-proxy"}
    proxy = services["docker-socket-proxy"]
    rules = [v for v in proxy["volumes"] if v["target"] == proxy["command"][-1]]
    assert rules and rules[0]["source"].endswith("exporter/socket-proxy/haproxy.cfg")
    # A unix socket in a volume only the proxy and the exporter mount: no TCP port that every
    # process of the stack's network namespace (the demo app's too) could reach.
    assert proxy["environment"]["DOCKER_API_PROXY_BIND"] == "unix@/run/docker-api/docker.sock"
    assert (
        services["exporter"]["environment"]["DOCKER_HOST"] == "unix:///run/docker-api/docker.sock"
    )
    mounting = {
        name
        for name, service in services.items()
        if any(v.get("source") == "docker-api" for v in service.get("volumes", []))
    }
    assert mounting == {"docker-socket-proxy", "exporter"}
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
    # The proxy's unix socket, in a volume only it and the exporter mount (no TCP port).
    api_volume = {
        name
        for name, service in services.items()
        for v in service.get("volumes", [])
        if v.get("source") == "docker-api"
    }
    assert api_volume == {"docker-socket-proxy", "exporter"}
    assert services["exporter"]["environment"]["DOCKER_HOST"].startswith("unix:///run/docker-api/")
    assert services["docker-socket-proxy"]["user"] == "65534:65534"
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

    exporter = web_auth(stack, "exporter")

    def exporter_sees_all() -> bool:
        samples = scrape("http://127.0.0.1:9487/metrics", exporter)
        up = {
            labels["container_label_com_docker_compose_service"]: v
            for name, labels, v in samples
            if name == "container_up"
            and labels["container_label_com_docker_compose_project"] == stack.project
        }
        return (
            up == dict.fromkeys(RUNNING, 1.0)
            # probed from the webapp's labels, under its container's name
            and value(samples, "probe_success", probe="webapp", name=f"{stack.project}-webapp-1")
            == 1.0
        )

    wait_until(exporter_sees_all, timeout=30)
    samples = scrape("http://127.0.0.1:9487/metrics", exporter)
    assert values(samples, "container_memory_usage_bytes", name=f"{stack.project}-webapp-1")[0] > 0

    def targets_up() -> set[str]:
        targets = requests.get(
            "http://127.0.0.1:9090/api/v1/targets", auth=web_auth(stack, "prometheus"), timeout=5
        ).json()
        up = {t["labels"]["job"] for t in targets["data"]["activeTargets"] if t["health"] == "up"}
        return up if {"exporter", "webapp", "relay", "prometheus", "alertmanager"} <= up else set()

    wait_until(targets_up, timeout=40, interval=1)


class StressRun(threading.Thread):
    """`make stress PROFILE=...` on the test stack (the demo's own `run_stress`), in a thread,
    until `stop()`; `error` says why it ended early, if it did."""

    def __init__(self, stack: Stack, profile: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.profile = stack, profile
        self.stopping = threading.Event()
        self.error = ""

    def run(self) -> None:
        try:
            run_stress(self.stack, self.profile, "2m")
        except StackError as exc:
            if not self.stopping.is_set():
                self.error = str(exc)
        if not self.stopping.is_set():
            self.error = self.error or "the stress run ended before it was stopped"

    def stop(self) -> None:
        """Kill its container (the load generator; nothing to shut down cleanly)."""
        self.stopping.set()
        project = f"label=com.docker.compose.project={self.stack.project}"
        service = "label=com.docker.compose.service=stress-generator"
        listed = self.stack.docker("ps", "--quiet", "--filter", project, "--filter", service)
        if listed.stdout.split():
            self.stack.docker("kill", *listed.stdout.split())
        self.join(timeout=60)


def link(text: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}: (\S+)", text, re.MULTILINE)
    assert found, f"no {label!r} line in the text part:\n{text}"
    return found.group(1)


@pytest.mark.docker
def test_memory_intensive_stress_mails_a_graph_and_a_silence_link_that_works(
    stack: Stack, tmp_path: Path
) -> None:
    """The issue's "done when", on the stack `make demo` runs: `make stress
    PROFILE=memory-intensive` -> a ContainerHighMemory mail with its graph, seen in a browser,
    whose silence link, followed through the running Alertmanager's API, silences the alert.
    (docs/mail-example.png, a ContainerDown mail with its log lines, is made by
    tests/e2e/test_alert_mails.py.)"""
    outbox = outbox_of(stack)
    container = f"{stack.project}-webapp-1"
    started = time.time()
    stress = StressRun(stack, "memory-intensive")
    stress.start()
    try:
        found = wait_until(
            lambda: (
                stress.error or mails_about(outbox, "ContainerHighMemory", container, since=started)
            ),
            timeout=90,
        )
    finally:
        stress.stop()
    assert not stress.error, stress.error
    mail = found[0]
    assert mail.subject == f"[WARNING] 1 alert: ContainerHighMemory ({container})"
    message = mail.message
    assert isinstance(message, EmailMessage)
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == f"ContainerHighMemory-{container}.png"
    chart = Image.open(io.BytesIO(attachment.get_content())).convert("RGB")
    assert chart.size == (600, 260)

    # As a person sees it: the chart whole and at its size, the series drawn, the links there.
    shown, _ = chart_as_shown(message, chart, tmp_path)
    assert colour_pixels(shown, SERIES_BLUE) > 400, "the memory series is not drawn"
    assert colour_pixels(shown, THRESHOLD_RED) > 150, "the threshold is not drawn"
    html = message.get_body(preferencelist=("html",)).get_content()
    for label in ("Silence this alert", "Silence this container for 1 h", "Graph in Prometheus"):
        assert f">{label}</a>" in html

    # The mail's silence link points at the running Alertmanager (the demo's external URL);
    # followed through its API, the alert is silenced.
    text = message.get_body(preferencelist=("plain",)).get_content()
    silence_link = link(text, "Silence this alert")
    assert silence_link.startswith("http://localhost:9093/#/silences/new?filter="), silence_link
    matchers = matchers_from_silence_url(silence_link)
    assert matchers["alertname"] == "ContainerHighMemory" and matchers["name"] == container
    alertmanager = silence_link.partition("#")[0]
    auth = web_auth(stack, "alertmanager")
    silence_id = create_silence(
        alertmanager, matchers, duration=300, comment="from the mail", auth=auth
    )

    def silenced() -> bool:
        alerts = requests.get(f"{alertmanager}api/v2/alerts", timeout=5, auth=auth).json()
        mine = [a for a in alerts if a["labels"].get("alertname") == "ContainerHighMemory"]
        return bool(mine) and all(silence_id in a["status"]["silencedBy"] for a in mine)

    wait_until(silenced, timeout=20)
    silences = requests.get(f"{alertmanager}api/v2/silences", timeout=5, auth=auth).json()
    assert [s["status"]["state"] for s in silences if s["id"] == silence_id] == ["active"]


# Run inside the webapp container: each request of argv[1] (name: [method, url, JSON body])
# without credentials; prints each one's HTTP status (or why it failed) as JSON.
ATTACKER = """
import json, sys, urllib.error, urllib.request
def attempt(method, url, body):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return str(error)
attacks = json.loads(sys.argv[1])
print(json.dumps({name: attempt(*attack) for name, attack in attacks.items()}))
"""


def attacks(silence_id: str) -> dict[str, list[object]]:
    """What the monitored app could do to the monitoring without credentials (issue 18)."""
    now = time.time()
    every_alert = {
        "matchers": [{"name": "alertname", "value": ".+", "isRegex": True, "isEqual": True}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "endsAt": "2036-01-01T00:00:00Z",
        "createdBy": "attacker",
        "comment": "quiet",
    }
    injected = [{"labels": {"alertname": "InjectedByTheApp", "severity": "critical"}}]
    firing = {"status": "firing", "alerts": [{"labels": {"alertname": "InjectedByTheApp"}}]}
    return {
        "prometheus quit": ["POST", "http://127.0.0.1:9090/-/quit", None],
        "prometheus reload": ["POST", "http://127.0.0.1:9090/-/reload", None],
        "silence everything": ["POST", "http://127.0.0.1:9093/api/v2/silences", every_alert],
        "expire a silence": ["DELETE", f"http://127.0.0.1:9093/api/v2/silence/{silence_id}", None],
        "inject an alert": ["POST", "http://127.0.0.1:9093/api/v2/alerts", injected],
        "read the exporter": ["GET", "http://127.0.0.1:9487/metrics", None],
        "post to the relay": ["POST", "http://127.0.0.1:9095/webhook", firing],
    }


@pytest.mark.docker
def test_the_monitored_app_cannot_touch_the_monitoring_and_an_incident_is_still_mailed(
    stack: Stack,
) -> None:
    """Issue 18's proof, from inside the webapp container (it shares 127.0.0.1 with the stack):
    every request without credentials is refused, nothing changed, and a container stopped
    afterwards is still mailed as critical."""
    alertmanager, prometheus = web_auth(stack, "alertmanager"), web_auth(stack, "prometheus")
    silences_url = "http://127.0.0.1:9093/api/v2/silences"
    before = requests.get(silences_url, auth=alertmanager, timeout=5).json()
    silence_id = create_silence(
        "http://127.0.0.1:9093", {"alertname": "NotARealAlert"}, duration=600, auth=alertmanager
    )
    webapp = f"{stack.project}-webapp-1"
    attempt = stack.docker(
        "exec", webapp, "python3", "-c", ATTACKER, json.dumps(attacks(silence_id))
    )
    assert attempt.returncode == 0, attempt.stderr
    answers = json.loads(attempt.stdout)
    refused = {name: status for name, status in answers.items() if status in (401, 403)}
    assert refused == answers, f"not refused: {set(answers) - set(refused)}: {answers}"

    # Nothing changed: the silences are the same (ours still active), nothing injected,
    # Prometheus up and answering its operator.
    after = requests.get(silences_url, auth=alertmanager, timeout=5).json()
    assert {s["id"] for s in after} == {s["id"] for s in before} | {silence_id}
    assert [s["status"]["state"] for s in after if s["id"] == silence_id] == ["active"]
    assert not [s for s in after if s["createdBy"] == "attacker"]
    alerts = requests.get("http://127.0.0.1:9093/api/v2/alerts", auth=alertmanager, timeout=5)
    assert "InjectedByTheApp" not in alerts.text
    ready = requests.get("http://127.0.0.1:9090/-/ready", auth=prometheus, timeout=5)
    assert ready.status_code == 200

    check_stopped_container_is_mailed_as_critical(stack)


def check_stopped_container_is_mailed_as_critical(stack: Stack) -> None:
    outbox = outbox_of(stack)
    container = f"{stack.project}-webapp-1"
    stack.run("kill", "webapp", capture=True)

    def mail_about_webapp() -> email.message.EmailMessage | None:
        for path in sorted(outbox.glob("*.eml")):
            message = parse(path.read_bytes())
            text = message.as_string()
            if "ContainerDown" in text and container in text:
                return message
        return None

    message = wait_until(mail_about_webapp, timeout=60, interval=1)
    assert "critical" in message.as_string().lower()
