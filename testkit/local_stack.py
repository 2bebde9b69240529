"""The monitoring stack as local processes on loopback, from copies of the repository's configs.

For tests and benchmarks that need the real thing without Docker Compose: `dockpulse-exporter`,
Prometheus, Alertmanager and `dockpulse-relay` each run as a process on a free 127.0.0.1 port,
logging to `<work dir>/<name>/`. Every config is the repository's file with only ports and paths
changed; callers may shorten timings in the copy (tests) or keep the shipped ones (benchmarks).

    with LocalStack(work_dir) as stack:
        relay = stack.relay()
        alertmanager = stack.alertmanager(relay.url)
        exporter = stack.exporter(exporter_config(probe_url=...))
        stack.prometheus(prometheus_config(exporter.port, [alertmanager.port], "my-.*"))
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import yaml

from dockpulse.settings import parse_duration
from dockpulse_stack.images import REPO_ROOT
from testkit.helpers import free_port
from testkit.relay_process import RelayProcess

PROMETHEUS_DIR = REPO_ROOT / "prometheus"
ALERTMANAGER_CONFIG = REPO_ROOT / "alertmanager" / "alertmanager.yml"
EXPORTER_CONFIG = REPO_ROOT / "exporter" / "exporter.yml"

# Test timings, everything a few seconds instead of minutes, so a test sees an alert's mail
# quickly: Prometheus scrapes and evaluates every second; warnings wait 1 s in the relay's buffer
# (10 s shipped), its dispatcher looks 5 times a second, and the same alert may be mailed again
# after 1 s (a test fails and recovers within seconds).
TEST_INTERVAL = "1s"
TEST_RELAY_TIMINGS = {"BUFFER_TIMEOUT": "1", "CHECK_INTERVAL": "0.2", "ALERT_COOLDOWN": "1"}


class LocalStackError(RuntimeError):
    """A service of the local stack is missing, exited, or did not get ready."""


def binary(*names: str) -> str:
    """Path of the first of `names` on PATH (Debian calls Alertmanager prometheus-alertmanager)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise LocalStackError(f"none of {names} is installed (apt-get install prometheus ...)")


def seconds(duration: str | float) -> float:
    """A Prometheus duration (`0s`, `30s`, `5m`) in seconds."""
    try:
        return parse_duration(duration)
    except ValueError:
        return 0.0


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Terminate `process` if it still runs; kill it if it has not exited within `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Service:
    """A server process on 127.0.0.1:port, with its own folder and log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    folder: Path
    # behind a web config: `https` and what requests needs (`auth`, `verify`) to get in
    scheme: str = field(default="http", kw_only=True)
    request_options: dict[str, Any] = field(default_factory=dict, kw_only=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "service.log"

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        """Until GET `path` answers 200; LocalStackError with the log's tail if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalStackError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                answer = requests.get(self.url + path, timeout=2, **self.request_options)
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise LocalStackError(f"{self.name} not ready at {self.url}{path} within {timeout:.0f}s")

    def stop(self) -> None:
        stop_process(self.process)


class Stoppable(Protocol):
    """What LocalStack keeps of each process it started: a Service or a RelayProcess."""

    name: str

    def stop(self) -> None: ...


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def alertmanager_config(
    relay_url: str | Sequence[str], token_file: Path, smtp_port: int | None = None, **caps: str
) -> dict[str, Any]:
    """The repository's alertmanager.yml, posting to `relay_url` with the token in `token_file`
    (several relay replicas: each webhook once per replica, every notification to all).

    `caps` (group_wait=, group_interval=) shorten every route's setting that is longer (tests:
    warnings need not wait 30 s, a resolved notification not 15 s). `smtp_port`: Alertmanager's
    own e-mail (the direct-email receiver) goes to a plain SMTP server on 127.0.0.1 there.
    """
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    relay_urls = [relay_url] if isinstance(relay_url, str) else list(relay_url)
    for receiver in config["receivers"]:
        webhooks = []
        for webhook in receiver.get("webhook_configs", []):
            for url in relay_urls:
                copy = deepcopy(webhook)
                copy["url"] = url + urlsplit(webhook["url"]).path  # /webhook, /heartbeat
                copy["http_config"]["authorization"]["credentials_file"] = str(token_file)
                webhooks.append(copy)
        if webhooks:
            receiver["webhook_configs"] = webhooks
        for mail in receiver.get("email_configs", []) if smtp_port else []:
            mail.update(smarthost=f"127.0.0.1:{smtp_port}", require_tls=False)
            mail.pop("auth_username", None)
            mail.pop("auth_password_file", None)
    routes = [config["route"], *config["route"].get("routes", [])]
    for setting, cap in caps.items():
        for route in routes:
            if setting in route and seconds(route[setting]) > seconds(cap):
                route[setting] = cap
    return config


def copy_rules(folder: Path, alert_for: dict[str, str] | None = None) -> list[str]:
    """The repository's rule files copied into `folder`, the `for` of the alerts named in
    `alert_for` replaced (tests: ContainerHighCpu need not wait 2 minutes); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        rules = yaml.safe_load(source.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") in (alert_for or {}):
                    rule["for"] = alert_for[rule["alert"]]  # type: ignore[index]
        target = folder / source.name
        target.write_text(yaml.safe_dump(rules, sort_keys=False))
        paths.append(str(target))
    return paths


def prometheus_config(
    exporter_port: int | Sequence[int],
    alertmanager_ports: list[int],
    keep_containers: str,
    rule_files: list[str] | None = None,
    interval: str | None = None,
    targets_file: Path | None = None,
) -> dict[str, Any]:
    """The repository's prometheus.yml, cut to the exporter job, alerting `alertmanager_ports`.

    The exporter job scrapes `exporter_port` (one or several exporters, one per Docker host):
    listed in `targets_file` when given, read by the shipped `file_sd_configs` (see
    `write_targets`), else as static targets. Only the containers whose name matches the regex
    `keep_containers` are kept: a test engine is shared, and other containers would raise alerts
    of their own. `interval` replaces every scrape and evaluation interval (tests); None keeps
    the shipped ones. `rule_files` default to the repository's rules.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["rule_files"] = rule_files or [
        str(PROMETHEUS_DIR / path) for path in config["rule_files"]
    ]
    targets = [f"127.0.0.1:{port}" for port in alertmanager_ports]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = targets
    exporter = next(job for job in config["scrape_configs"] if job["job_name"] == "exporter")
    # The shipped credentials are Compose secrets; the local servers have no web config.
    config["alerting"]["alertmanagers"][0].pop("basic_auth")
    exporter.pop("basic_auth")
    ports = [exporter_port] if isinstance(exporter_port, int) else list(exporter_port)
    if targets_file is None:
        del exporter["file_sd_configs"]
        exporter["static_configs"] = [{"targets": [f"127.0.0.1:{port}" for port in ports]}]
    else:
        write_targets(targets_file, ports)
        exporter["file_sd_configs"][0]["files"] = [str(targets_file)]
    exporter["metric_relabel_configs"] = [
        {"source_labels": ["name"], "regex": f"|{keep_containers}", "action": "keep"}
    ]
    if interval is not None:
        config["global"].update(
            scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
        )
        exporter.update(scrape_interval=interval, scrape_timeout=interval)
        for sd_config in exporter.get("file_sd_configs", []):
            sd_config["refresh_interval"] = interval
    config["scrape_configs"] = [exporter]
    return config


def write_targets(targets_file: Path, ports: Sequence[int]) -> None:
    """A file_sd targets file in the shipped format (prometheus/targets/exporters.yml): the
    exporters on 127.0.0.1 at `ports`. Prometheus rereads it on its own; written atomically."""
    targets_file.parent.mkdir(parents=True, exist_ok=True)
    draft = targets_file.with_suffix(".tmp")
    draft.write_text(yaml.safe_dump([{"targets": [f"127.0.0.1:{port}" for port in ports]}]))
    draft.replace(targets_file)


def demo_webapp_probe() -> dict[str, str]:
    """The probe docker-compose.yaml's labels give the demo webapp, as exporter.yml settings."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    labels = compose["services"]["webapp"]["labels"]
    prefix = "dockpulse.probe."
    return {k[len(prefix) :]: str(v) for k, v in labels.items() if k.startswith(prefix)}


def exporter_config(probe_url: str | None = None, **settings: Any) -> dict[str, Any]:
    """The repository's exporter.yml plus, with `probe_url`, the demo webapp's probe (its
    compose labels) pointed there as a file probe; `settings` replace top-level keys, `probe`
    replaces keys of that probe."""
    config = yaml.safe_load(EXPORTER_CONFIG.read_text())
    probe = settings.pop("probe", {})
    config["probes"] = (
        [] if probe_url is None else [{**demo_webapp_probe(), "url": probe_url, **probe}]
    )
    config.update(settings)
    return config


class LocalStack:
    """The services started in one work folder, sharing the relay's bearer token."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.services: list[Stoppable] = []
        self.token = secrets.token_urlsafe(24)
        self.token_file = work_dir / "relay_token"
        self.token_file.write_text(self.token + "\n")
        self.token_file.chmod(0o600)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def folder(self, name: str) -> Path:
        folder = self.work_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start(
        self,
        name: str,
        args: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        request_options: dict[str, Any] | None = None,
    ) -> Service:
        """Start a server process and wait until `ready_path` answers 200."""
        folder = self.folder(name)
        with (folder / "service.log").open("ab") as log:
            process = subprocess.Popen(
                args,
                cwd=folder,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(
            name, port, process, folder, scheme=scheme, request_options=request_options or {}
        )
        self.services.append(service)
        service.wait_ready(ready_path)
        return service

    def relay(self, name: str = "relay", **env: str) -> RelayProcess:
        """The relay with the outbox backend (every mail a .eml file in its `outbox`) and the
        stack's token, ready when /healthz answers 200; no timings of its own: `env` adds
        settings (e.g. TEST_RELAY_TIMINGS)."""
        folder = self.folder(name)
        settings = {
            "MAIL_BACKEND": "outbox",
            "ALERT_LOG": str(folder / "container_alerts.log"),
            **env,
        }
        relay = RelayProcess(
            folder,
            settings,
            name=name,
            token=self.token,
            timings={},
            ready_statuses=(200,),
            ready_timeout=30.0,
        )
        self.services.append(relay)
        return relay.start()

    def alertmanager(
        self,
        relay_url: str | Sequence[str],
        name: str = "alertmanager",
        cluster_port: int | None = None,
        peers: Sequence[int] = (),
        flags: Sequence[str] = (),
        smtp_port: int | None = None,
        port: int | None = None,
        request_options: dict[str, Any] | None = None,
        **caps: str,
    ) -> Service:
        """The real Alertmanager from `alertmanager_config`: clustering off, or gossiping on
        127.0.0.1:`cluster_port` with the peers at 127.0.0.1:`peers`; `flags` are added. On
        `port` (default: a free one; the same port again restarts it where Prometheus looks)."""
        folder, port = self.folder(name), port or free_port()
        config_file = folder / "alertmanager.yml"
        config = alertmanager_config(relay_url, self.token_file, smtp_port, **caps)
        config_file.write_text(yaml.safe_dump(config))
        cluster = f"127.0.0.1:{cluster_port}" if cluster_port else ""
        args = [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config_file}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--cluster.listen-address={cluster}",
            *(f"--cluster.peer=127.0.0.1:{peer}" for peer in peers),
            *flags,
        ]
        return self.start(name, args, port, "/-/ready", request_options=request_options)

    def prometheus(
        self,
        config: dict[str, Any],
        name: str = "prometheus",
        flags: tuple[str, ...] = (),
        request_options: dict[str, Any] | None = None,
    ) -> Service:
        """The real Prometheus with `config` (see `prometheus_config`) and extra `flags`;
        `request_options` (requests' `auth`) when a flag gives it a web config."""
        folder, port = self.folder(name), free_port()
        config_file = folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        args = [
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *flags,
        ]
        return self.start(name, args, port, "/-/ready", request_options=request_options)

    def exporter(
        self,
        config: dict[str, Any],
        name: str = "exporter",
        port: int | None = None,
        docker_host: str | None = None,
        web_config: Path | None = None,
        scheme: str = "http",
        request_options: dict[str, Any] | None = None,
    ) -> Service:
        """`dockpulse-exporter` with `config` on `port` (default: a free one), against the engine
        at `docker_host` (default: DOCKER_HOST); behind `web_config` if given, reached with
        `scheme` and `request_options` (requests' `auth`, `verify`)."""
        folder, port = self.folder(name), port or free_port()
        config_file = folder / "exporter.yml"
        config_file.write_text(yaml.safe_dump(config))
        args = [
            sys.executable,
            "-m",
            "dockpulse_exporter.cli",
            f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{port}",
            *([f"--web.config.file={web_config}"] if web_config else []),
        ]
        env = {"DOCKER_HOST": docker_host} if docker_host else None
        return self.start(name, args, port, "/metrics", env, scheme, request_options)

    def stop(self) -> None:
        """Stop every service, the last started first."""
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
