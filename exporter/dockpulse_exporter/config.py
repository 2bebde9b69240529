"""The exporter's settings: `--config.file` YAML, then environment variables, then flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from dockpulse.settings import Duration, ListenAddress, load_settings

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9487"

# Environment variable -> field; the file and the flags use the field names.
ENVIRONMENT = {
    "DOCKER_HOST": "docker_host",
    "EXPORTER_LISTEN_ADDRESS": "listen_address",
    "EXPORTER_REFRESH_INTERVAL": "refresh_interval",
    "EXPORTER_RESYNC_INTERVAL": "resync_interval",
    "EXPORTER_CGROUP_ROOT": "cgroup_root",
    "EXPORTER_PROC_ROOT": "proc_root",
}


class Probe(BaseModel):
    """An HTTP health probe, run on its own schedule (blackbox_exporter's metrics)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    url: HttpUrl
    interval: Duration = 5.0
    timeout: Duration = 2.0
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    slow_threshold: Duration | None = None  # exported for the "probe slow" rule

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> Probe:
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self


class ExporterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docker_host: str = "unix:///var/run/docker.sock"
    listen_address: ListenAddress = DEFAULT_LISTEN_ADDRESS
    refresh_interval: Duration = 5.0
    resync_interval: Duration = 60.0
    cgroup_root: Path = Path("/sys/fs/cgroup")
    proc_root: Path = Path("/proc")
    container_labels: list[str] = Field(default_factory=list)  # Docker labels to export
    probes: list[Probe] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_probe_names(self) -> ExporterConfig:
        names = [probe.name for probe in self.probes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"probes: duplicate name {duplicates[0]!r}")
        return self


def load_config(config_file: str | None, flags: dict[str, object]) -> ExporterConfig:
    return load_settings(ExporterConfig, config_file, ENVIRONMENT, flags)
