"""`dockpulse-webapp` start-up errors: one line naming the setting, no stack trace."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from dockpulse_webapp import healthcheck
from tests.webapp.process import BIN


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dockpulse-webapp"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (["--web.listen-address=nonsense"], {}, "listen_address (WEBAPP_LISTEN_ADDRESS)"),
        (["--workers=0"], {}, "workers (WEBAPP_WORKERS)"),
        (["--threads=lots"], {}, "threads (WEBAPP_THREADS)"),
        ([], {"WEBAPP_MAX_MEMORY_MB": "-1"}, "max_memory_mb (WEBAPP_MAX_MEMORY_MB)"),
        (
            [],
            {"WEBAPP_DB_CONNECT_TIMEOUT": "soon"},
            "db_connect_timeout (WEBAPP_DB_CONNECT_TIMEOUT)",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line_naming_the_field_and_variable(
    args: list[str], env: dict[str, str], field: str
) -> None:
    result = run_cli(*args, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"dockpulse-webapp: config error: {field}:")


def test_a_taken_port_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(f"--web.listen-address=127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"dockpulse-webapp: cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
    ]


@pytest.mark.parametrize(
    ("cmdline", "environ", "url"),
    [
        (["dockpulse-webapp", "--web.listen-address=127.0.0.1:9001"], {}, "127.0.0.1:9001"),
        (["dockpulse-webapp", "--web.listen-address", "0.0.0.0:9002"], {}, "127.0.0.1:9002"),
        (["dockpulse-webapp"], {"WEBAPP_LISTEN_ADDRESS": "0.0.0.0:8000"}, "127.0.0.1:8000"),
        ([], {}, "127.0.0.1:8000"),
    ],
)
def test_the_container_healthcheck_finds_the_port_the_app_serves_on(
    cmdline: list[str], environ: dict[str, str], url: str
) -> None:
    address = healthcheck.listen_address(cmdline, environ)
    assert healthcheck.health_url(address) == f"http://{url}/health"
