"""Settings: the example file loads; a bad value stops the relay with one line naming it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from dockpulse_relay.config import load_config
from testkit.helpers import free_port, wait_until
from testkit.local_stack import stop_process
from testkit.relay_process import RELAY

EXAMPLE = Path(__file__).parents[2] / "alert-relay" / "relay.yml"


def test_the_example_config_loads_and_the_environment_wins(monkeypatch) -> None:
    monkeypatch.setenv("BUFFER_TIMEOUT", "500ms")
    monkeypatch.setenv("RECIPIENT_EMAILS", "a@example.com, b@example.com")
    config = load_config(str(EXAMPLE), {"listen_address": None})
    assert config.mail_backend == "outbox"
    assert config.alert_cooldown == 300
    assert config.buffer_timeout == 0.5
    assert config.recipient_emails == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"BUFFER_TIMEOUT": "soon"}, [], "buffer_timeout (BUFFER_TIMEOUT)"),
        ({"CHECK_INTERVAL": "-1"}, [], "check_interval (CHECK_INTERVAL)"),
        ({"SEND_RESOLVED": "perhaps"}, [], "send_resolved (SEND_RESOLVED)"),
        ({"MAIL_BACKEND": "pigeon"}, [], "mail_backend (MAIL_BACKEND)"),
        ({"MAIL_BACKEND": "ses", "AWS_REGION": "eu-west-1"}, [], "sender_email (SENDER_EMAIL)"),
        ({"MAIL_BACKEND": "smtp", "SENDER_EMAIL": "a@b.example", "RECIPIENT_EMAILS": "c@d.example"},
         [], "smtp_host (SMTP_HOST)"),
        ({}, ["--web.listen-address=localhost"], "listen_address"),
        ({}, ["--web.listen-address=0.0.0.0:9095"], "auth_token (RELAY_AUTH_TOKEN): required"),
        ({"MAIL_FALLBACK_BACKEND": "smtp"}, [], "when mail_fallback_backend is smtp"),
        ({}, ["--config.file={tmp}/relay.yml"], "buffer_timeout_seconds"),
        ({"CHART_BUDGET": "0"}, [], "chart_budget (CHART_BUDGET)"),
        ({"CHART_WINDOW": "an hour"}, [], "chart_window (CHART_WINDOW)"),
        ({"CHARTS_PER_DIGEST": "0"}, [], "charts_per_digest (CHARTS_PER_DIGEST)"),
        ({"GRAFANA_URL": "grafana:3000"}, [], "grafana_url (GRAFANA_URL)"),
    ],
)  # fmt: skip
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, env, args, named) -> None:
    (tmp_path / "relay.yml").write_text("buffer_timeout_seconds: 5\n")
    result = subprocess.run(
        [str(RELAY), *(arg.format(tmp=tmp_path) for arg in args)],
        env={**os.environ, "RELAY_STORE": str(tmp_path / "relay.db"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dockpulse-relay: config error: ")
    assert named in lines[0]


def test_without_a_token_it_serves_loopback_or_when_told(tmp_path) -> None:
    """No RELAY_AUTH_TOKEN: 127.0.0.1 is fine, 0.0.0.0 only with RELAY_ALLOW_NO_AUTH=true."""
    env = {k: v for k, v in os.environ.items() if k != "RELAY_AUTH_TOKEN"}
    port = free_port()
    process = subprocess.Popen(
        [str(RELAY), f"--web.listen-address=0.0.0.0:{port}"],
        env={**env, "RELAY_STORE": str(tmp_path / "relay.db"), "RELAY_ALLOW_NO_AUTH": "true"},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok)
    finally:
        stop_process(process)
