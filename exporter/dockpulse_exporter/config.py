"""The exporter's settings: `--config.file` YAML, then environment variables, then flags."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    UrlConstraints,
    model_validator,
)

from dockpulse.settings import Duration, ListenAddress, load_settings

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9487"

# Environment variable -> field; the file and the flags use the field names.
ENVIRONMENT = {
    "DOCKER_HOST": "docker_host",
    "EXPORTER_LISTEN_ADDRESS": "listen_address",
    "EXPORTER_WEB_CONFIG_FILE": "web_config_file",
    "EXPORTER_REFRESH_INTERVAL": "refresh_interval",
    "EXPORTER_RESYNC_INTERVAL": "resync_interval",
    "EXPORTER_CGROUP_ROOT": "cgroup_root",
    "EXPORTER_PROC_ROOT": "proc_root",
    "EXPORTER_DOCKER_ROOT_DIR": "docker_root_dir",
    "EXPORTER_FILESYSTEM_INTERVAL": "filesystem_interval",
    "EXPORTER_HTTP_READ_TIMEOUT": "http_read_timeout",
    "EXPORTER_HTTP_MAX_CONNECTIONS": "http_max_connections",
    "EXPORTER_PROBE_WORKERS": "probe_workers",
    "EXPORTER_LABEL_PROBES": "label_probes",
    "EXPORTER_MAIL_LOGS": "mail_logs",
}
COMPOSE_LABELS = "com.docker.compose.*"


class LabelFilter(BaseModel):
    """Which Docker labels become `container_label_*` (shell-style patterns, deny wins).

    cAdvisor exports every label; so does the default here. Narrow `allow` (or grow `deny`)
    to keep the label set small; Compose's labels are in the default allow list either way.
    """

    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(default_factory=lambda: ["*"])
    deny: list[str] = Field(default_factory=list)

    def exports(self, docker_label: str) -> bool:
        return any(fnmatchcase(docker_label, p) for p in self.allow) and not any(
            fnmatchcase(docker_label, p) for p in self.deny
        )


def _label_filter(value: Any) -> Any:
    """A plain list (the older form) is an allow list; Compose's labels stay in."""
    if isinstance(value, list):
        return {"allow": [COMPOSE_LABELS, *value]}
    return value


# http(s):// is an HTTP probe; tcp://host:port succeeds on connect (and TLS handshake).
ProbeUrl = Annotated[
    AnyUrl, UrlConstraints(allowed_schemes=["http", "https", "tcp"], host_required=True)
]

# A regex written as text, searched in the body's bytes (as blackbox_exporter does).
BodyPattern = Annotated[
    re.Pattern[bytes], BeforeValidator(lambda v: v.encode() if isinstance(v, str) else v)
]


class Probe(BaseModel):
    """An HTTP health probe, run on its own schedule (blackbox_exporter's metrics)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    url: ProbeUrl
    tls: bool = False  # tcp:// only: a TLS handshake after connecting (blackbox's tcp `tls`)
    interval: Duration = 5.0
    timeout: Duration = 2.0
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    slow_threshold: Duration | None = None  # exported for the "probe slow" rule
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None  # sent as the request body (a POST health endpoint)
    # Python `re` syntax, searched in the final answer's body (blackbox_exporter's names)
    fail_if_body_matches_regexp: list[BodyPattern] = Field(default_factory=list)
    fail_if_body_not_matches_regexp: list[BodyPattern] = Field(default_factory=list)
    ca_file: FilePath | None = None  # PEM CA bundle for a private CA (https only)
    insecure_skip_verify: bool = False  # accept any certificate (the run still records it)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> Probe:
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self

    @model_validator(mode="after")
    def _options_fit_the_scheme(self) -> Probe:
        scheme = self.url.scheme
        if scheme == "tcp" and self.url.port is None:
            raise ValueError("url: a tcp:// url needs a port")
        if self.tls and scheme != "tcp":
            raise ValueError("tls is for tcp:// urls (https:// is TLS already)")
        uses_tls = scheme == "https" or self.tls
        if (self.ca_file or self.insecure_skip_verify) and not uses_tls:
            raise ValueError("ca_file and insecure_skip_verify need an https url (or tcp with tls)")
        return self


class ContainerContextSettings(BaseModel):
    """What `/api/v1/containers/<name>/context` (the alert mail's "why") may send and wait."""

    model_config = ConfigDict(extra="forbid")

    log_lines: int = Field(default=20, ge=1, le=500)  # the last lines of the container's log
    line_chars: int = Field(default=500, ge=80, le=16384)  # a longer line is cut
    total_chars: int = Field(default=8000, ge=1000, le=1_000_000)  # the oldest lines go first
    timeout: Duration = 3.0  # one request's Docker calls (inspect, logs), all together
    events_per_container: int = Field(default=20, ge=1, le=1000)  # the recent-events ring
    removed_kept_for: Duration = 600.0  # a removed container's events (the mail says removed)


class ExporterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docker_host: str = "unix:///var/run/docker.sock"
    listen_address: ListenAddress = DEFAULT_LISTEN_ADDRESS
    web_config_file: Path | None = None  # TLS and basic auth (dockpulse/web_config.py)
    refresh_interval: Duration = 5.0
    resync_interval: Duration = 60.0
    cgroup_root: Path = Path("/sys/fs/cgroup")
    proc_root: Path = Path("/proc")
    docker_root_dir: Path | None = None  # default: Docker's own (docker info), if visible here
    filesystem_interval: Duration = 60.0  # writable-layer sizes and filesystem stats
    container_labels: Annotated[LabelFilter, BeforeValidator(_label_filter)] = Field(
        default_factory=LabelFilter
    )
    probes: list[Probe] = Field(default_factory=list)
    label_probes: bool = True  # also probe containers labelled dockpulse.probe.url / .port
    # Probe runs at once (threads, and so sockets); a hanging target holds one for its timeout.
    probe_workers: int = Field(default=16, ge=1, le=1024)
    http_read_timeout: Duration = 10.0  # a connection must send its request within this
    http_max_connections: int = Field(default=32, ge=1)  # served at once; more are closed
    # Log lines in the container context served for alert mails; false: none for any container
    # (health output, exit cause and events stay). Per container: dockpulse.mail_logs=false.
    mail_logs: bool = True
    container_context: ContainerContextSettings = Field(default_factory=ContainerContextSettings)

    @model_validator(mode="after")
    def _unique_probe_names(self) -> ExporterConfig:
        names = [probe.name for probe in self.probes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"probes: duplicate name {duplicates[0]!r}")
        return self


def load_config(config_file: str | None, flags: dict[str, object]) -> ExporterConfig:
    return load_settings(ExporterConfig, config_file, ENVIRONMENT, flags)
