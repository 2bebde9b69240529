"""Bad configuration: one line naming the field, exit code 2, no stack trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_exporter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dockpulse_exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
    )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ("refresh_interval: soon\n", "refresh_interval"),
        ("probe_workers: 0\n", "probe_workers"),
        ("probes:\n  - name: web\n    url: not-a-url\n", "probes.0.url"),
        (
            "probes:\n  - name: web\n    url: http://x/\n    timeout: 10s\n    interval: 1s\n",
            "probes.0",
        ),
        ("unknown_setting: 1\n", "unknown_setting"),
        ("container_labels:\n  allow: 5\n", "container_labels.allow"),
        ("container_labels:\n  keep: [a]\n", "container_labels.keep"),
        ("http_max_connections: 0\n", "http_max_connections"),
        ("filesystem_interval: never\n", "filesystem_interval"),
        ("- just\n- a list\n", "config.file"),
        ("refresh_interval: [\n", "config.file"),
    ],
)
def test_bad_config_file(tmp_path: Path, config: str, field: str) -> None:
    config_file = tmp_path / "exporter.yml"
    config_file.write_text(config)
    result = run_exporter(f"--config.file={config_file}", "--web.listen-address=127.0.0.1:1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert field in lines[0] and "Traceback" not in result.stderr


def test_bad_listen_address() -> None:
    result = run_exporter("--web.listen-address=nowhere")
    assert result.returncode == 2
    assert "listen_address (EXPORTER_LISTEN_ADDRESS): expected HOST:PORT" in result.stderr


def test_bad_environment_value(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "EXPORTER_REFRESH_INTERVAL": "-5s"}
    result = run_exporter("--web.listen-address=127.0.0.1:1", env=env)
    assert result.returncode == 2
    assert "refresh_interval" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_exporter(f"--config.file={tmp_path / 'absent.yml'}")
    assert result.returncode == 2
    assert "config.file" in result.stderr
